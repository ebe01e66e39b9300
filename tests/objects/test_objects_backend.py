"""ObjectBackend: a class with @replicated / @query methods as a Backend, in process.

Covers dispatch by name, every refusal (BadCommand with its exact message, same on every
replica, nothing changed), session methods and expiry through the StateMachine, results
that cannot be packed, and the registry wrapping such a class."""

from __future__ import annotations

from typing import Any

import pytest

import zraft
from tests.fsm.fsm_helpers import Feeder, new_machine
from zraft.fsm.backend import BadCommand
from zraft.fsm.registry import BackendNotAllowed, load_backend
from zraft.objects import Counter, LockManager, ObjectBackend
from zraft.objects.methods import backend_name, is_replicated_class, methods_of


class Account:
    def __init__(self) -> None:
        self.balance = 0
        self.log: list[Any] = []

    @zraft.replicated
    def deposit(self, amount: int, *, memo: str = "") -> int:
        self.balance += amount
        self.log.append([amount, memo])
        return self.balance

    @zraft.replicated
    def withdraw(self, amount: int) -> int:
        if amount > self.balance:
            raise zraft.BadCommand(f"balance is {self.balance}")
        self.balance -= amount
        return self.balance

    @zraft.replicated
    def crash(self) -> None:
        raise KeyError("boom")

    @zraft.replicated
    def odd_result(self) -> Any:
        return {1, 2}

    @zraft.query
    def get(self) -> int:
        return self.balance

    def helper(self) -> None:  # not marked: unreachable
        self.balance = -1


def _backend(cls: type = Account) -> ObjectBackend:
    backend = ObjectBackend(cls)
    backend.init("p1@127.0.0.1:9000")
    return backend


def test_a_call_runs_the_method_by_name_with_args_and_kwargs() -> None:
    b = _backend()
    assert b.apply(["deposit", [5]]) == 5
    assert b.apply(["deposit", [2], {"memo": "tip"}]) == 7
    assert b.apply(["withdraw", [3]]) == 4
    assert b.query(["get"]) == 4
    assert b.obj.log == [[5, ""], [2, "tip"]]


@pytest.mark.parametrize(("call", "message"), [
    ("deposit", "a call is [method, args, kwargs]"),
    ([], "a call is [method, args, kwargs]"),
    (["deposit", [1], {}, 4], "a call is [method, args, kwargs]"),
    ([7], "a method name is a str, not int"),
    (["nope"], "Account has no method 'nope'"),
    (["helper"], "Account has no method 'helper'"),
    (["__init__"], "Account has no method '__init__'"),
    (["x" * 10_000], "Account has no method 'xxxxxxxxxxxxxxxxxxxx"),
    (["get"], "Account.get is a query, not a command"),
    (["deposit", "5"], "a call's args are an array, not str"),
    (["deposit", [1], {1: 2}], "a call's kwargs are a map with str keys"),
    (["deposit", [1], []], "a call's kwargs are a map with str keys"),
    (["deposit"], "Account.deposit(): missing a required argument: 'amount'"),
    (["deposit", [1, 2]], "Account.deposit(): too many positional arguments"),
    (["deposit", [1], {"self": 1}], "Account.deposit(): multiple values for argument 'self'"),
    (["deposit", [1], {"bogus": 1}],
     "Account.deposit(): got an unexpected keyword argument 'bogus'"),
    (["withdraw", [100]], "balance is 0"),
])
def test_every_refused_call_is_a_bad_command_that_changes_nothing(call: Any,
                                                                   message: str) -> None:
    b = _backend()
    with pytest.raises(BadCommand) as info:
        b.apply(call)
    assert str(info.value).startswith(message)
    assert len(str(info.value)) <= 200
    assert b.obj.balance == 0 and b.obj.log == []


def test_a_command_cannot_be_read_and_a_callable_query_sees_the_object() -> None:
    b = _backend()
    with pytest.raises(BadCommand, match=r"Account\.deposit is a command, not a query"):
        b.query(["deposit", [1]])
    assert b.query(lambda obj: type(obj).__name__) == "Account"


def test_through_the_state_machine_errors_are_the_same_on_every_replica() -> None:
    replies = []
    for _ in range(2):
        feeder = Feeder(new_machine(backend=ObjectBackend(Account)))
        replies.append([(r.result, r.error) for r in (
            feeder.write(["deposit", [10]]), feeder.write(["withdraw", [11]]),
            feeder.write(["crash"]), feeder.write(["odd_result"]), feeder.write(["nope"]))])
    assert replies[0] == replies[1]
    assert replies[0] == [
        (10, None), (None, "bad_command: balance is 10"),
        (None, "backend_error: KeyError: 'boom'"),  # the message reaches the client
        (None, "backend_error: TypeError: Account.odd_result returned a value msgpack "
               "cannot carry (cannot encode set with msgpack)"),
        (None, "bad_command: Account has no method 'nope'"),
    ]


def test_session_methods_get_the_session_and_expiry_calls_the_hook() -> None:
    machine = new_machine(backend=ObjectBackend(LockManager))
    feeder = Feeder(machine)
    assert feeder.write(["acquire", ["L"]]).error == (
        "bad_command: LockManager.acquire needs the caller's session (a temporary write of "
        "a Session; an object handle sends it so)")
    feeder.connect("s1", 1000, time=0)
    feeder.connect("s2", 5000, time=0)
    assert feeder.swrite("s1", 1, ["acquire", ["L"]], temporary=True).result is True
    assert feeder.swrite("s2", 1, ["acquire", ["L"]], temporary=True).result is False
    assert feeder.swrite("s2", 2, ["release", ["L"]], temporary=True).result is False
    assert machine.query(["owner", ["L"]]).value == "s1"
    assert machine.stats()["temporary_keys"] == 1
    feeder.ping("s2", 2, time=1500)  # s1 (timeout 1 s) expires before this entry
    assert machine.query(["owner", ["L"]]).value is None
    assert feeder.swrite("s2", 3, ["acquire", ["L"]], temporary=True).result is True
    assert machine.query(["locks"]).value == {"L": "s2"}


def test_the_registry_wraps_a_replicated_class_behind_the_allowlist() -> None:
    backend = load_backend("zraft.objects:Counter", ["dict", "zraft.objects:Counter"])
    assert isinstance(backend, ObjectBackend) and backend.cls is Counter
    assert isinstance(backend, zraft.Backend)
    with pytest.raises(BackendNotAllowed):
        load_backend("zraft.objects:Counter", ["dict"])
    assert backend_name(Counter) == "zraft.objects:Counter"
    assert backend_name(Account) == f"{__name__}:Account"


def test_marking_rules() -> None:
    with pytest.raises(TypeError, match="marks a method defined with def"):
        zraft.replicated(print)
    with pytest.raises(TypeError, match="must not start with _"):
        def _hidden(self: Any) -> None: ...
        zraft.replicated(_hidden)

    class Sub(Account):
        def withdraw(self, amount: int) -> int:  # overridden unmarked: unreachable
            return 0

        @zraft.replicated(session=True)
        def mine(self, session: str) -> str:
            return session

    assert set(methods_of(Sub)) == {"deposit", "crash", "odd_result", "get", "mine"}
    assert methods_of(Sub)["mine"].session and not methods_of(Sub)["deposit"].session
    assert is_replicated_class(Sub) and not is_replicated_class(dict)
    with pytest.raises(TypeError, match="not defined at a module's top level"):
        backend_name(Sub)


def test_zraft_query_is_the_marker_for_a_function_and_the_read_otherwise() -> None:
    def value(self: Any) -> int:
        return 1

    assert zraft.query(value) is value and methods_of(type("T", (), {"value": value}))
    # anything else is the client's read: its argument checks run (before any network)
    with pytest.raises(ValueError, match="timeout"):
        zraft.query("p@127.0.0.1:1", "key", timeout=0)
