"""Log entries, cluster configurations and snapshot metadata.

These are NamedTuples on purpose: msgpack packs a tuple as an array, so an entry crosses the
wire and goes to disk as ``[index, term, type, data, time]`` with no conversion code, and
building one costs a single tuple allocation on the hot path.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple

# msgpack bytes of an entry besides its data's content, at most: the array header (1),
# index, term and time as uint64 (9 each), the type (1), a bin32/str32/array32 header (5).
ENTRY_OVERHEAD = 34


class EntryType(IntEnum):
    """Entry kinds, numbered as in zraft_lib (``1 = CONFIG, 2 = DATA, 3 = NOOP``)."""

    CONFIG = 1
    DATA = 2
    NOOP = 3


CONFIG = EntryType.CONFIG
DATA = EntryType.DATA
NOOP = EntryType.NOOP


class ClusterConfig(NamedTuple):
    """A membership configuration (zraft_lib's ``pconf``).

    ``old`` holds the voters of a stable configuration (or C_old during a joint change);
    ``new`` is empty when stable and holds C_new during a joint (transitional) change.
    Both are sorted tuples of peer ids, so equal configs compare equal.
    """

    old: tuple[str, ...] = ()
    new: tuple[str, ...] = ()

    @staticmethod
    def stable(peers: Any) -> ClusterConfig:
        return ClusterConfig(tuple(sorted(set(peers))), ())

    @staticmethod
    def joint(old: Any, new: Any) -> ClusterConfig:
        return ClusterConfig(tuple(sorted(set(old))), tuple(sorted(set(new))))

    @property
    def state(self) -> str:
        """``blank`` (no config yet), ``stable`` or ``joint`` (zraft_lib: transactional)."""
        if not self.old and not self.new:
            return "blank"
        return "joint" if self.new else "stable"

    @property
    def is_blank(self) -> bool:
        return not self.old and not self.new

    @property
    def is_joint(self) -> bool:
        return bool(self.new)

    def voters(self) -> frozenset[str]:
        """Everyone whose vote or acknowledgement can count, in either half."""
        return frozenset(self.old) | frozenset(self.new)

    def has_voter(self, peer: str) -> bool:
        return peer in self.old or peer in self.new

    @staticmethod
    def from_wire(raw: Any) -> ClusterConfig:
        old, new = raw
        return ClusterConfig(tuple(old), tuple(new))


BLANK_CONFIG = ClusterConfig((), ())


class Entry(NamedTuple):
    """One log entry (zraft_lib's ``#entry{}``).

    ``data`` is opaque to the core: ``bytes`` for DATA entries (the node packs commands with
    msgpack), a ``ClusterConfig`` for CONFIG entries, ``None`` for NOOP entries.
    ``time`` is the leader's wall clock in milliseconds when the entry was created, never
    lower than the entry before it, so that session expiry is decided identically everywhere.
    """

    index: int
    term: int
    type: int
    data: Any
    time: int

    def size(self) -> int:
        """At least the entry's msgpack size in bytes, used for batch byte caps: a batch
        of entries whose sizes add up to N encodes in at most N bytes (plus the message's
        own fields), so a capped AppendEntries always fits a frame."""
        d = self.data
        if type(d) is bytes:  # nearly always (checked first: this runs per entry per send)
            return ENTRY_OVERHEAD + len(d)
        if isinstance(d, ClusterConfig):  # two arrays of str ids (rare: a config change)
            return ENTRY_OVERHEAD + 10 + sum(5 + 4 * len(p) for p in (*d.old, *d.new))
        if isinstance(d, (bytearray, str)):
            return ENTRY_OVERHEAD + 4 * len(d)
        return ENTRY_OVERHEAD + 32

    @staticmethod
    def from_wire(raw: Any) -> Entry:
        index, term, etype, data, time = raw
        if etype == CONFIG:
            data = ClusterConfig.from_wire(data)
        return Entry(index, term, etype, data, time)


class SnapshotMeta(NamedTuple):
    """What a snapshot covers (zraft_lib's ``#snapshot_info{}``).

    ``term`` is the term of entry ``index``, so ``last_term`` is right after compaction
    (zraft_lib forgot it: SPEC section 11, item 7). ``config`` is the last configuration at
    or before ``index`` and ``config_index`` the index of its entry.
    """

    index: int = 0
    term: int = 0
    config_index: int = 0
    config: ClusterConfig = BLANK_CONFIG

    @staticmethod
    def from_wire(raw: Any) -> SnapshotMeta:
        index, term, config_index, config = raw
        return SnapshotMeta(index, term, config_index, ClusterConfig.from_wire(config))


class HardState(NamedTuple):
    """What must be durable before any message that depends on it is sent.

    ``recovering`` > 0: this peer found its log damaged at start and may have lost entries it
    had acknowledged in a term <= ``recovering`` (protocol-aware recovery, see
    docs/internals.md). Until it holds a durable entry of a later term it neither votes nor
    campaigns; 0 means its log is whole.
    """

    term: int = 0
    vote: str | None = None
    recovering: int = 0
