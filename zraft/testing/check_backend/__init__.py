"""A determinism and conformance checker for state machines (Backends).

``python -m zraft.testing.check_backend mod:Class [--commands mod:gen] [--seeds N]
[--steps N]``, or in a test suite::

    from zraft.testing.check_backend import check, write, query

    def my_commands(rng):
        if rng.random() < 0.7:
            return write(["add", rng.choice("abc"), rng.randint(1, 9)])
        return query(["total"])

    def test_my_backend_is_deterministic():
        check(MyBackend, my_commands, seeds=10, steps=200)  # AssertionError with a report

It drives the backend through the real ``zraft.fsm.machine.StateMachine`` (so sessions,
expiry, snapshots and restores take the nodes' own code paths) on three replicas, each in
its own process with its own PYTHONHASHSEED, fake clock and random streams, over one log of
random plain, session and temporary writes, session connects/pings/retries/closes and
expiries, leader changes and queries; each replica takes snapshots, crashes and replays,
and installs another's snapshot at its own random points. It fails on the first command
where replicas answer or end up differently (a difference in state found at a checkpoint
is narrowed to its entry by a second run), and when a snapshot does not restore into the
same state, an async snapshot job reads live state, apply or query mutates its input, a
query changes the state, or a result is not msgpack-encodable or a snapshot holds a pickle.
Modules: ``scenario`` (the log), ``replica`` (one replica's run), ``probe`` (the backend
wrapper), ``env`` (fake clocks and random), ``compare`` (first problem), ``worker`` (replica
processes), ``generators`` (commands), ``runner`` (``check``), ``__main__`` (the command
line).
"""

from zraft.testing.check_backend.generators import DEFAULTS, dict_commands, query, write
from zraft.testing.check_backend.replica import Schedule
from zraft.testing.check_backend.runner import CheckFailed, Summary, check

__all__ = ["DEFAULTS", "CheckFailed", "Schedule", "Summary", "check", "dict_commands",
           "query", "write"]
