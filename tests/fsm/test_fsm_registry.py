"""The backend loader: allowlist first, import only afterwards."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from zraft.backends.dict import DictBackend
from zraft.fsm.registry import (
    BackendLoadError,
    BackendNotAllowed,
    canonical_name,
    is_allowed,
    load_backend,
    probe_backend,
)

TRAP_MODULE = "zraft_fsm_test_trap_backend"


@pytest.fixture
def trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module whose import raises: importing it at all would make the test fail loudly."""
    (tmp_path / f"{TRAP_MODULE}.py").write_text(
        "raise RuntimeError('this module must never be imported')\nclass Backend:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(TRAP_MODULE, None)
    return TRAP_MODULE


def test_builtin_alias_loads_the_dict_backend() -> None:
    backend = load_backend("dict", ["dict"])
    assert isinstance(backend, DictBackend)


def test_alias_and_full_spec_allow_each_other() -> None:
    assert isinstance(load_backend("zraft.backends.dict:DictBackend", ["dict"]), DictBackend)
    assert isinstance(load_backend("dict", ["zraft.backends.dict:DictBackend"]), DictBackend)
    assert canonical_name(" dict ") == "zraft.backends.dict:DictBackend"


def test_refused_backend_is_never_imported(trap: str) -> None:
    with pytest.raises(BackendNotAllowed, match="not in the allowlist"):
        load_backend(f"{trap}:Backend", ["dict"])
    assert trap not in sys.modules


def test_the_trap_really_raises_when_allowed(trap: str) -> None:
    """Proves the previous test could fail: once allowed, the import does run (and what it
    raises becomes one line naming the cause)."""
    with pytest.raises(BackendLoadError) as info:
        load_backend(f"{trap}:Backend", [f"{trap}:Backend"])
    assert str(info.value) == "RuntimeError: this module must never be imported"


def test_empty_allowlist_refuses_even_the_builtin() -> None:
    with pytest.raises(BackendNotAllowed):
        load_backend("dict", [])


def test_allowing_a_module_does_not_allow_other_classes_in_it(trap: str) -> None:
    with pytest.raises(BackendNotAllowed):
        load_backend(f"{trap}:Other", [f"{trap}:Backend"])
    assert trap not in sys.modules


@pytest.mark.parametrize(
    "name", ["", "os", "os:system; rm", "../evil:X", "a..b:C", "dict:", ":Class", "a:b:c"]
)
def test_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(BackendNotAllowed):
        load_backend(name, [name, "dict"])
    assert not is_allowed(name, [name])


def _load_error(name: str) -> str:
    with pytest.raises(BackendLoadError) as info:
        load_backend(name, [name])
    return str(info.value)


def test_allowed_but_missing_or_wrong_is_a_load_error_of_one_line() -> None:
    assert _load_error("zraft_no_such_module_xyz:B") == (
        "ModuleNotFoundError: No module named 'zraft_no_such_module_xyz'")
    assert _load_error("zraft.backends.dict:Nope") == (
        "module 'zraft.backends.dict' has no class 'Nope'")
    assert _load_error("collections:OrderedDict") == (
        "OrderedDict does not implement the Backend protocol (missing: init, query, apply, "
        "apply_in_session, expire_session, snapshot, snapshot_done, snapshot_failed, "
        "install_snapshot)")


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a module ``name`` with ``source`` on a fresh import path entry."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(source)
        sys.modules.pop(name, None)
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


_OK = (
    "class B:\n"
    "    def __init__(self, fail=False):\n        pass\n"
    + "".join(f"    def {m}(self, *a):\n        pass\n" for m in (
        "query", "apply", "apply_in_session", "expire_session", "snapshot", "snapshot_done",
        "snapshot_failed", "install_snapshot"))
)


def test_a_module_that_fails_at_import_is_named_with_its_error(user_module) -> None:
    name = user_module("zraft_reg_syntax", "def broken(:\n")
    assert _load_error(f"{name}:B").startswith("SyntaxError: ")
    name = user_module("zraft_reg_exit", "import sys\nsys.exit(3)\n")
    assert _load_error(f"{name}:B") == "SystemExit: 3"


def test_a_constructor_or_init_that_raises_is_named(user_module) -> None:
    name = user_module("zraft_reg_ctor", _OK.replace("pass\n", "raise ValueError('no disk')\n", 1)
                       + "    def init(self, peer_id):\n        pass\n")
    assert _load_error(f"{name}:B") == "B() raised ValueError: no disk"
    name = user_module("zraft_reg_init", _OK + "    def init(self, peer_id):\n"
                                              "        raise KeyError(peer_id)\n")
    with pytest.raises(BackendLoadError) as info:
        probe_backend(f"{name}:B", [f"{name}:B"], "p@h:1")
    assert str(info.value) == "B.init raised KeyError: 'p@h:1'"


def test_a_module_added_after_a_failed_import_is_found(user_module, tmp_path: Path) -> None:
    assert _load_error("zraft_reg_late:B") == (
        "ModuleNotFoundError: No module named 'zraft_reg_late'")
    user_module("zraft_reg_late", _OK + "    def init(self, peer_id):\n        pass\n")
    assert type(load_backend("zraft_reg_late:B", ["zraft_reg_late:B"])).__name__ == "B"


def test_errors_are_zraft_errors() -> None:
    from zraft.errors import ZRaftError

    assert issubclass(BackendNotAllowed, ZRaftError)
    assert BackendNotAllowed.code == "backend_not_allowed"
    from zraft.errors import BackendError

    # both reach a client as zraft.BackendError (subclasses), with their own wire codes
    assert issubclass(BackendNotAllowed, BackendError)
    assert issubclass(BackendLoadError, BackendError) and BackendLoadError.code == "backend_error"
