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
    """Proves the previous test could fail: once allowed, the import does run."""
    with pytest.raises(RuntimeError, match="never be imported"):
        load_backend(f"{trap}:Backend", [f"{trap}:Backend"])


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


def test_allowed_but_missing_or_wrong_is_a_load_error() -> None:
    with pytest.raises(BackendLoadError, match="cannot import"):
        load_backend("zraft_no_such_module_xyz:B", ["zraft_no_such_module_xyz:B"])
    with pytest.raises(BackendLoadError, match="has no class"):
        load_backend("zraft.backends.dict:Nope", ["zraft.backends.dict:Nope"])
    with pytest.raises(BackendLoadError, match="Backend protocol"):
        load_backend("collections:OrderedDict", ["collections:OrderedDict"])


def test_errors_are_zraft_errors() -> None:
    from zraft.errors import ZRaftError

    assert issubclass(BackendNotAllowed, ZRaftError)
    assert BackendNotAllowed.code == "backend_not_allowed"
