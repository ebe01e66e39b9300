"""Leader side: proposals, replication flow control, commit, reads, membership.

Rules:
- On election the leader appends a NOOP of its term; reads wait until it commits.
- Appends are sent from ``ready()`` (``_leader_flush``): everything proposed since the last
  Ready goes to each follower in batches capped by ``max_batch_bytes``; REPLICATE followers
  get up to ``max_inflight`` pipelined batches, PROBE followers one.
- Commit news rides on the next append; a follower with nothing to append learns it from a
  heartbeat at the next tick (never one heartbeat per commit).
- Commit = joint-aware quorum of DURABLE match indexes (the leader's own counts only after
  ``persisted``); only an entry of the current term commits by counting (Raft 5.4.2).
- Reads (zraft_lib epochs): reads arriving before a Ready share one epoch; the leader bumps
  its epoch and every voter gets a message carrying it; when a quorum (leader included)
  echoed epoch >= e, reads of epoch <= e are released at the commit index they saw.
- check-quorum: a leader that did not hear from a quorum during election_ticks steps down.
- request timeout (zraft_lib's ``request_timeout``): a REPLICATE follower with appends in
  flight that answered nothing for ``effective_request_timeout`` ticks goes back to PROBE,
  so a follower that lost them (or restarted) is not pipelined to blindly.
- Leadership transfer: see transfer.py (no proposal and no membership change meanwhile).
- Membership: see membership.py; a leader that commits a stable config without itself
  tells everyone the commit, emits Removed and steps down.
"""

from __future__ import annotations

from typing import Any

from zraft.core.entries import CONFIG, DATA, NOOP, ClusterConfig, Entry
from zraft.core.errors import CoreError, NotLeader, TransferInProgress
from zraft.core.membership import (
    FINAL,
    JOINT,
    LEADER_CHANGED,
    STAGING,
    TIMEOUT,
    PendingChange,
    check_change,
)
from zraft.core.messages import (
    AppendEntries,
    AppendReply,
    ConfigChangeResult,
    ReadFailed,
    ReadState,
    SnapshotNeeded,
)
from zraft.core.progress import PROBE, REPLICATE, SNAPSHOT, Progress
from zraft.core.quorum import committed_index, has_quorum
from zraft.core.roles import LEADER


class LeaderRole:
    # -- client calls --------------------------------------------------------------------

    def propose(self: Any, datas: list[bytes], now_ms: int) -> list[tuple[int, int]]:
        """Append DATA entries (leader only); returns (index, term) of each."""
        if self.role != LEADER:
            raise NotLeader(self.leader)
        if self.transfer is not None:
            raise TransferInProgress(self.id, self.transfer.target)
        if self.quiesced:
            self._wake()  # the append itself wakes the followers
        log = self.log
        base = log.last_index()
        term = self.term
        t = now_ms if now_ms > log.last_time else log.last_time
        entries = [Entry(base + i, term, DATA, d, t) for i, d in enumerate(datas, 1)]
        log.append(entries)
        self._bcast = True
        if "commit_before_durable" in self.mutations:
            self._maybe_commit()
        return [(e.index, term) for e in entries]

    def read(self: Any, ctx: Any) -> None:
        """ReadIndex: answered later by ReadState(ctx, index) or ReadFailed in Ready.reads."""
        if self.role != LEADER:
            self._reads.append(ReadFailed(ctx, "not_leader", self.leader))
            return
        if self.quiesced:
            self._wake()  # and the read's quorum round wakes the followers
        if self.commit < self.term_start:
            self._read_wait.append(ctx)
        else:
            self._read_new.append(ctx)

    def change_config(
        self: Any, new_peers: Any, prev_index: int, ctx: Any, timeout_ticks: int
    ) -> None:
        """zraft_lib set_new_configuration; answered by ConfigChangeResult in Ready.events."""
        if self.quiesced:
            self._wake(heartbeat=True)
        log = self.log
        cidx, cfg = log.config()
        err = check_change(
            cfg.state, cidx, self.commit, prev_index, self.change is not None,
            self.role == LEADER,
        )
        if err is not None:
            self._events.append(ConfigChangeResult(ctx, err, cidx, cfg, self.leader))
            return
        if self.transfer is not None:  # handing over: ask the next leader
            self._events.append(ConfigChangeResult(ctx, "retry", cidx, cfg, self.id))
            return
        new = tuple(sorted(set(new_peers)))
        if not new:
            raise CoreError("a configuration needs at least one member")
        if new == cfg.old:
            self._events.append(ConfigChangeResult(ctx, None, cidx, cfg, self.id))
            return
        learners = tuple(p for p in new if p not in cfg.old)
        self.change = PendingChange(ctx, new, learners, self.commit, max(1, timeout_ticks))
        self._sync_progress()
        self._maybe_finish_staging()

    def snapshot_failed(self: Any, peer: str) -> None:
        """The out-of-band snapshot send to ``peer`` failed: probe again next heartbeat."""
        pr = self.progress.get(peer) if self.role == LEADER else None
        if pr is not None and pr.state == SNAPSHOT:
            pr.become_probe()
            pr.probe_sent = True  # retry on the next heartbeat, not in a tight loop

    # -- role transitions ----------------------------------------------------------------

    def _become_leader(self: Any) -> None:
        self.role = LEADER
        self.leader = self.id
        self.votes = {}
        self.heartbeat_elapsed = 0
        self.election_elapsed = 0
        self._idle_ticks = 0
        self.progress = {}
        self.departing = {}
        self._dirty = set()
        self._sync_progress()
        log = self.log
        noop = Entry(log.last_index() + 1, self.term, NOOP, None, log.last_time)
        self.term_start = noop.index
        self._append_local([noop])
        self._maybe_commit()
        if self.transfer is not None:  # we stepped down handing over, and won again
            self._transfer_watch()

    def _abandon_leadership(self: Any) -> None:
        leader = self.leader
        for ctx in self._read_wait + self._read_new:
            self._reads.append(ReadFailed(ctx, LEADER_CHANGED, leader))
        for _, ctx, _ in self._read_pending:
            self._reads.append(ReadFailed(ctx, LEADER_CHANGED, leader))
        self._read_wait = []
        self._read_new = []
        self._read_pending.clear()
        ch = self.change
        if ch is not None:
            self._events.append(ConfigChangeResult(ch.ctx, LEADER_CHANGED, 0, None, leader))
            self.change = None
        self.progress = {}
        self.departing = {}
        self._dirty = set()
        self._bcast = False
        self._commit_notify = False

    def _append_local(self: Any, entries: list[Entry]) -> None:
        self.log.append(entries)
        self._bcast = True
        if any(e.type == CONFIG for e in entries):
            self._sync_progress()

    def _sync_progress(self: Any) -> None:
        """Match the progress map to the latest config (+ staging learners)."""
        cfg = self.log.config()[1]
        next_index = self.log.last_index() + 1
        inflight = self.cfg.max_inflight
        progress = self.progress
        keep = set()
        for p in sorted(cfg.voters()):
            if p == self.id:
                continue
            pr = progress.get(p)
            if pr is None:
                pr = progress[p] = Progress(next_index, inflight)
                self._dirty.add(p)
            pr.learner = False
            pr.departing = False
            self.departing.pop(p, None)
            keep.add(p)
        ch = self.change
        if ch is not None and ch.phase == STAGING:
            for p in ch.learners:
                if p not in keep and p != self.id:
                    if p not in progress:
                        progress[p] = Progress(next_index, inflight, learner=True)
                        self._dirty.add(p)
                    keep.add(p)
        for p in list(progress):
            if p in keep:
                continue
            pr = progress[p]
            if pr.learner:
                del progress[p]
            elif not pr.departing:
                pr.departing = True
                self.departing[p] = [0, -1]

    # -- ticks ---------------------------------------------------------------------------

    def _tick_leader(self: Any) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        cfg = self.cfg
        if self.election_elapsed >= cfg.election_ticks:
            self.election_elapsed = 0
            if cfg.check_quorum:
                active = {p for p, pr in self.progress.items() if pr.recent_active}
                active.add(self.id)
                if not has_quorum(self.log.config()[1], active):
                    self.become_follower(self.term, None)
                    return
            for pr in self.progress.values():
                pr.recent_active = False
        if self.transfer is not None:
            self._tick_transfer()
        ch = self.change
        if ch is not None and ch.phase == STAGING:
            ch.ticks_left -= 1
            if ch.ticks_left <= 0:
                self.change = None
                cidx, ccfg = self.log.config()
                self._events.append(ConfigChangeResult(ch.ctx, TIMEOUT, cidx, ccfg, self.id))
                self._sync_progress()
            else:
                self._maybe_finish_staging()
        if self.departing:
            self._tick_departing()
        if self._commit_notify and self.heartbeat_elapsed < cfg.heartbeat_ticks:
            # Commit news waits for the next tick, not the next Ready: under load the next
            # append carries it anyway, and an immediate heartbeat (and its reply) per commit
            # doubled the messages of every sequential write. Followers apply within a tick.
            commit = self.commit
            for p, pr in self.progress.items():
                if pr.state == REPLICATE and self._commit_news(pr, commit):
                    self._send_heartbeat(p, pr)
        self._commit_notify = False
        request_timeout = cfg.effective_request_timeout
        for pr in self.progress.values():
            if pr.state == REPLICATE and pr.inflight:
                pr.silent_ticks += 1
                if pr.silent_ticks >= request_timeout:
                    pr.become_probe()  # the heartbeat below sends the probe
                    pr.silent_ticks = 0
        if self.heartbeat_elapsed >= cfg.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            for p, pr in self.progress.items():
                if pr.state == SNAPSHOT:
                    pr.snapshot_elapsed += cfg.heartbeat_ticks
                    if pr.snapshot_elapsed >= cfg.snapshot_retry_ticks:
                        pr.become_probe()
                if pr.state == PROBE:
                    # an unanswered probe is repeated without entries (a silent follower
                    # costs one small message per heartbeat); the entries follow its reply
                    self._send_append(p, pr, True, with_entries=not pr.probe_sent)
                else:
                    self._send_heartbeat(p, pr)
        if cfg.quiesce_ticks:
            self._maybe_quiesce()

    def _tick_departing(self: Any) -> None:
        """Departing members are replicated to until they acked the config that removed
        them and a commit covering it (then they emit Removed), within a bound."""
        cidx = self.log.config()[0]
        et, hb = self.cfg.election_ticks, self.cfg.heartbeat_ticks
        for p in list(self.departing):
            ages = self.departing[p]
            ages[0] += 1
            pr = self.progress.get(p)
            if pr is None:
                del self.departing[p]
                continue
            if ages[1] < 0 and self.commit >= cidx and pr.sent_commit >= cidx <= pr.match:
                ages[1] = ages[0]
            done = ages[1] >= 0 and ages[0] - ages[1] >= 2 * hb
            if done or ages[0] >= 10 * et:
                del self.departing[p]
                del self.progress[p]

    # -- sending -------------------------------------------------------------------------

    def _send_append(
        self: Any, peer: str, pr: Progress, allow_empty: bool, with_entries: bool = True
    ) -> bool:
        if with_entries and pr.is_paused():
            return False
        log = self.log
        prev = pr.next - 1
        prev_term = log.term(prev)
        if prev_term is None:
            if prev < log.snapshot.index:
                pr.become_snapshot(log.snapshot.index)
                self._events.append(SnapshotNeeded(peer, log.snapshot))
                return False
            pr.next = log.last_index() + 1  # beyond our log: cannot happen, clamp
            prev = pr.next - 1
            prev_term = log.term(prev) or 0
        last = log.last_index()
        if with_entries and pr.next <= last:
            entries = log.slice(pr.next, last + 1, self.cfg.max_batch_bytes)
        else:
            entries = []
        if not entries and not allow_empty:
            return False
        end = prev + len(entries)
        commit = self.commit if self.commit < end else end
        self._msgs.append(
            AppendEntries(self.term, self.id, peer, prev, prev_term, entries, commit, self.epoch,
                          pr.heal_to, self.cluster)
        )
        pr.sent(end, len(entries))
        if commit > pr.sent_commit:
            pr.sent_commit = commit
        pr.sent_epoch = self.epoch
        return True

    def _send_heartbeat(self: Any, peer: str, pr: Progress) -> None:
        if pr.state == REPLICATE:
            # check the whole optimistic pipeline arrived; on a FIFO link a reject here
            # means appends were lost, and the reject's hint restarts from there
            prev = pr.next - 1
            prev_term = self.log.term(prev)
            if prev_term is None:
                # the pipeline's end was compacted since: it cannot be verified, so probe
                # from match (which leads to SnapshotNeeded if that is compacted too)
                pr.become_probe()
                self._send_append(peer, pr, True)
                return
        else:
            prev = pr.match
            prev_term = self.log.term(prev)
            if prev_term is None:
                prev, prev_term = 0, 0
        commit = self.commit if self.commit < prev else prev
        self._msgs.append(
            AppendEntries(self.term, self.id, peer, prev, prev_term, [], commit, self.epoch,
                          pr.heal_to, self.cluster)
        )
        if commit > pr.sent_commit:
            pr.sent_commit = commit
        pr.sent_epoch = self.epoch

    def _commit_news(self: Any, pr: Progress, commit: int) -> bool:
        """Would a heartbeat tell this follower a commit index it has not been sent?"""
        known = pr.match
        if pr.state == REPLICATE:
            known = pr.next - 1
        elif self.log.term(known) is None:
            return False  # compacted: the heartbeat carries prev 0, commit 0
        return min(commit, known) > pr.sent_commit

    def _leader_flush(self: Any) -> None:
        """Called by ready(): batch appends and epoch heartbeats (commit news waits for
        the tick, see ``_tick_leader``)."""
        need_epoch = False
        if self._read_new:
            self.epoch += 1
            epoch, commit = self.epoch, self.commit
            for ctx in self._read_new:
                self._read_pending.append((epoch, ctx, commit))
            self._read_new = []
            need_epoch = "read_without_quorum" not in self.mutations
        bcast, dirty = self._bcast, self._dirty
        if bcast or dirty or need_epoch:
            epoch = self.epoch
            for p, pr in self.progress.items():
                if bcast or p in dirty:
                    # a probe goes out even when empty: it finds where the follower is
                    while self._send_append(p, pr, pr.state == PROBE):
                        pass
                if need_epoch and pr.sent_epoch < epoch:
                    self._send_heartbeat(p, pr)
            self._bcast = False
            dirty.clear()
        if self._read_pending:
            self._check_reads()

    # -- replies -------------------------------------------------------------------------

    def _on_append_reply(self: Any, msg: AppendReply) -> None:
        pr = self.progress.get(msg.src)
        if pr is None:
            return
        pr.recent_active = True
        pr.heard_awake = True
        pr.silent_ticks = 0
        if msg.recovering:
            if not pr.heal_to:
                self._follower_recovering(msg.src, pr, msg)
        elif pr.heal_to:
            pr.heal_to = 0
        if msg.epoch > pr.epoch:
            pr.epoch = msg.epoch
            if self._read_pending:
                self._check_reads()
        if msg.success:
            probe_ack = pr.state == PROBE and msg.index >= pr.next - 1
            grew = pr.maybe_update(msg.index)
            if pr.state == PROBE:
                if grew or probe_ack:
                    pr.become_replicate()
                    pr.next = msg.index + 1  # below match+1 only while repairing
            elif pr.state == SNAPSHOT and pr.match >= pr.pending_snapshot:
                pr.become_replicate()
            if pr.next <= self.log.last_index() or pr.state == PROBE:
                self._dirty.add(msg.src)  # something to send (idle acks make no Ready)
            if pr.sent_commit < pr.match and pr.sent_commit < self.commit:
                self._commit_notify = True  # it can now learn a commit it lacks
            if grew:
                if pr.learner:
                    self._maybe_finish_staging()
                elif not pr.departing:
                    self._maybe_commit()
            tr = self.transfer
            if tr is not None and tr.target == msg.src and self.role == LEADER:
                self._transfer_check(msg.src, pr)
            return
        if pr.state == SNAPSHOT:
            return
        if msg.index <= pr.match:
            # normally a stale reject; but a reject of exactly our latest position whose
            # hint lies below match means the follower lost acknowledged entries (disk
            # damage): probe from its hint. match stays (it was counted already).
            if msg.index == pr.next - 1 and msg.hint_index < pr.match:
                pr.become_probe()
                pr.next = msg.hint_index + 1
                self._dirty.add(msg.src)
            return
        guess = msg.hint_index
        if msg.hint_term > 0:
            guess = self.log.find_conflict_by_term(msg.hint_index, msg.hint_term)
        if pr.maybe_decrease(msg.index, guess + 1):
            self._dirty.add(msg.src)

    def _follower_recovering(self: Any, peer: str, pr: Progress, msg: AppendReply) -> None:
        """``peer`` lost entries it may have acknowledged. What we counted for it may be
        gone: from now on count only what it reports, and tell it it is whole once it
        holds our log up to our last index now (which holds every entry it acknowledged
        to us, and every entry committed before, counted for it or not)."""
        pr.heal_to = max(self.log.last_index(), 1)
        honest = msg.index if msg.success else msg.hint_index
        if pr.match > honest:
            pr.match = honest
            pr.become_probe()
            self._dirty.add(peer)

    # -- commit, reads, membership -------------------------------------------------------

    def _maybe_commit(self: Any) -> None:
        log = self.log
        cfg = log.config()[1]
        if "commit_before_durable" in self.mutations:
            own = log.last_index()
        else:
            own = log.stable_last()
        me, progress = self.id, self.progress

        def match(p: str) -> int:
            if p == me:
                return own
            pr = progress.get(p)
            return pr.match if pr is not None else 0

        idx = committed_index(cfg, match)
        if idx > self.commit and log.term(idx) == self.term:
            self.commit = idx
            self._commit_notify = True
            self._on_leader_commit()

    def _on_leader_commit(self: Any) -> None:
        if self._read_wait and self.commit >= self.term_start:
            self._read_new.extend(self._read_wait)
            self._read_wait = []
        log = self.log
        cidx, cfg = log.config()
        ch = self.change
        if cfg.is_joint:
            if cidx <= self.commit:
                final = Entry(
                    log.last_index() + 1, self.term, CONFIG, ClusterConfig.stable(cfg.new),
                    log.last_time,
                )
                self._append_local([final])
                if ch is not None and ch.phase == JOINT:
                    ch.phase = FINAL
                    ch.final_index = final.index
            return
        if ch is not None:
            if ch.phase == FINAL and self.commit >= ch.final_index:
                self._events.append(ConfigChangeResult(ch.ctx, None, ch.final_index, cfg, self.id))
                self.change = None
            elif ch.phase == STAGING:
                self._maybe_finish_staging()
        if cidx <= self.commit and not cfg.is_blank and self.id not in cfg.old:
            for p, pr in self.progress.items():
                self._send_heartbeat(p, pr)  # tell everyone the commit before leaving
            self._check_removed()
            self.become_follower(self.term, None)

    def _maybe_finish_staging(self: Any) -> None:
        ch = self.change
        if ch is None or ch.phase != STAGING or self.commit < self.term_start:
            return
        for p in ch.learners:
            pr = self.progress.get(p)
            if pr is None or pr.match < ch.target:
                return
        log = self.log
        cfg = log.config()[1]
        entry = Entry(
            log.last_index() + 1, self.term, CONFIG, ClusterConfig.joint(cfg.old, ch.new_peers),
            log.last_time,
        )
        ch.phase = JOINT
        ch.joint_index = entry.index
        self._append_local([entry])
        if "commit_before_durable" in self.mutations:
            self._maybe_commit()

    def _check_reads(self: Any) -> None:
        pending = self._read_pending
        if "read_without_quorum" in self.mutations:
            quorum_epoch = self.epoch
        else:
            me, progress, own = self.id, self.progress, self.epoch

            def epoch_of(p: str) -> int:
                if p == me:
                    return own
                pr = progress.get(p)
                return pr.epoch if pr is not None else 0

            quorum_epoch = committed_index(self.log.config()[1], epoch_of)
        while pending and pending[0][0] <= quorum_epoch:
            _, ctx, index = pending.popleft()
            self._reads.append(ReadState(ctx, index))
