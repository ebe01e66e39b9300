"""The dict backend's increment: not idempotent, so exactly-once writes are observable."""

from __future__ import annotations

from zraft.backends.dict import DictBackend


def test_incr_adds_and_answers_the_new_value() -> None:
    b = DictBackend()
    b.init("p@h:1")
    assert b.apply(["incr", "n", 5]).result == 5
    assert b.apply(["incr", "n", -2]).result == 3
    assert b.query("n").value == 3


def test_incr_of_a_non_int_fails_without_change() -> None:
    b = DictBackend()
    b.init("p@h:1")
    b.apply(["put", "s", "text"])
    assert b.apply(["incr", "s", 1]).result == ["incr_failed", "text"]
    assert b.query("s").value == "text"


def test_format_1_snapshots_stay_readable(tmp_path) -> None:
    """Snapshots written by the one-record-per-key format (1) still install."""
    import zlib

    from zraft.backends import dict as dict_backend
    from zraft.fsm.codec import packer

    pack = packer()
    body = pack.pack([1, 2, 1]) + pack.pack(["a", 1]) + pack.pack(["b", [2]])
    body += pack.pack(["sid-1", ["b"]])
    raw = dict_backend._MAGIC + body + dict_backend._CRC.pack(zlib.crc32(body))
    (tmp_path / dict_backend.STATE_FILE).write_bytes(raw)
    b = DictBackend()
    b.init("p@h:1")
    b.install_snapshot(tmp_path)
    assert b.query("a").value == 1 and b.query("b").value == [2]
    assert b.expire_session("sid-1") == ["b"]
