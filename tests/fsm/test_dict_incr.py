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
