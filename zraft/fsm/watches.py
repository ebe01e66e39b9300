"""One-shot watch registry (zraft_lib's fsm watchers), kept only by the leader.

Rules:
- A watch is ``(sid, ref)``: a session and the client's reference for one watched read.
  It is registered on the read's watch keys (exact) and watch prefixes (str/bytes; a key of
  the same type starting with the prefix matches).
- One-shot per watch: the first change to any of its keys fires it once with reason
  ``data_changed`` and removes it from every key (zraft_lib removed only the changed key's
  registration, so a watch on several keys could fire several times: SPEC 11 item 19).
- Changes come from write trigger keys and from keys deleted by session expiry. Firing order
  is deterministic: in the order of the changed keys, then of registration.
- ``drop_session`` forgets a session's watches silently (the session is gone).
- ``leader_lost`` fires every watch with ``leader_changed`` and clears the table.
- Not replicated and not in snapshots: a new leader starts empty; clients re-arm.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, NamedTuple

DATA_CHANGED = "data_changed"
LEADER_CHANGED = "leader_changed"

WatchId = tuple[str, Hashable]


class WatchTrigger(NamedTuple):
    """Tell session ``sid`` that its watch ``ref`` fired, and why."""

    sid: str
    ref: Any
    reason: str


class WatchRegistry:
    """key / prefix -> watches, and watch -> its keys and prefixes (for one-shot removal)."""

    def __init__(self) -> None:
        self._by_key: dict[Hashable, dict[WatchId, None]] = {}
        self._by_prefix: dict[str | bytes, dict[WatchId, None]] = {}
        # watch -> (keys, prefixes) it is registered on; insertion-ordered
        self._watches: dict[WatchId, tuple[dict[Hashable, None], dict[str | bytes, None]]] = {}
        self._by_session: dict[str, dict[Hashable, None]] = {}  # sid -> its refs

    def __len__(self) -> int:
        return len(self._watches)

    def watches(self) -> list[WatchId]:
        return list(self._watches)

    def register(
        self,
        sid: str,
        ref: Hashable,
        keys: Iterable[Hashable],
        prefixes: Iterable[str | bytes] = (),
    ) -> None:
        """Arm watch ``(sid, ref)`` on ``keys`` and ``prefixes`` (duplicates are ignored)."""
        watch = (sid, ref)
        own_keys, own_prefixes = self._watches.setdefault(watch, ({}, {}))
        self._by_session.setdefault(sid, {})[ref] = None
        for key in keys:
            own_keys[key] = None
            self._by_key.setdefault(key, {})[watch] = None
        for prefix in prefixes:
            own_prefixes[prefix] = None
            self._by_prefix.setdefault(prefix, {})[watch] = None
        if not own_keys and not own_prefixes:
            self._remove(watch)

    def fire(self, changed_keys: Iterable[Hashable]) -> list[WatchTrigger]:
        """Fire (once each, then remove) every watch on one of ``changed_keys``."""
        if not self._watches:
            return []
        fired: dict[WatchId, None] = {}
        for key in changed_keys:
            fired.update(self._by_key.get(key, ()))
            if self._by_prefix and isinstance(key, (str, bytes)):
                for prefix, watches in self._by_prefix.items():
                    if type(prefix) is type(key) and key.startswith(prefix):  # type: ignore[arg-type]
                        fired.update(watches)
        for watch in fired:
            self._remove(watch)
        return [WatchTrigger(sid, ref, DATA_CHANGED) for sid, ref in fired]

    def drop_session(self, sid: str) -> None:
        """Forget the session's watches without firing them."""
        for ref in list(self._by_session.get(sid, ())):
            self._remove((sid, ref))

    def leader_lost(self) -> list[WatchTrigger]:
        """Fire every watch with ``leader_changed`` and clear the table."""
        triggers = [WatchTrigger(sid, ref, LEADER_CHANGED) for sid, ref in self._watches]
        self.clear()
        return triggers

    def clear(self) -> None:
        self._by_key.clear()
        self._by_prefix.clear()
        self._watches.clear()
        self._by_session.clear()

    def _remove(self, watch: WatchId) -> None:
        keys, prefixes = self._watches.pop(watch)
        _discard(self._by_session, watch[0], watch[1])
        for key in keys:
            _discard(self._by_key, key, watch)
        for prefix in prefixes:
            _discard(self._by_prefix, prefix, watch)


def _discard(index: dict[Any, dict[Any, None]], slot: Any, member: Any) -> None:
    members = index.get(slot)
    if members is not None:
        members.pop(member, None)
        if not members:
            del index[slot]


__all__ = ["DATA_CHANGED", "LEADER_CHANGED", "WatchRegistry", "WatchTrigger"]
