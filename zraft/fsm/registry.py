"""Loading a backend by name, behind an allowlist.

Rules:
- A name is a built-in alias (``"dict"``) or ``"package.module:Class"``.
- The name is checked against ``allowed`` BEFORE anything is imported: only string
  operations happen until the check passes, so a refused module's top-level code never runs.
  Aliases are expanded on both sides, so allowing ``"dict"`` also allows
  ``"zraft.backends.dict:DictBackend"`` and vice versa.
- The loaded class is instantiated with no arguments and must satisfy ``Backend``, unless
  it is a replicated object (``@replicated`` / ``@query`` methods): then it is wrapped in
  ``zraft.objects.backend.ObjectBackend``, which is the Backend.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable

from zraft.errors import ZRaftError
from zraft.fsm.backend import Backend

BUILTIN_BACKENDS: dict[str, str] = {"dict": "zraft.backends.dict:DictBackend"}

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_SPEC = re.compile(rf"^({_DOTTED}):([A-Za-z_][A-Za-z0-9_]*)$")


class BackendNotAllowed(ZRaftError):
    """The backend name is not in the allowlist (or is not a valid backend name)."""

    code = "backend_not_allowed"


class BackendLoadError(ZRaftError):
    """An allowed backend could not be imported, found or instantiated."""

    code = "backend_load_error"


def canonical_name(name: str) -> str:
    """``"module:Class"`` for an alias or a spec; raises BackendNotAllowed if malformed."""
    spec = BUILTIN_BACKENDS.get(name.strip(), name.strip())
    if not _SPEC.match(spec):
        raise BackendNotAllowed(
            f"invalid backend name {name!r}: use a built-in alias "
            f"({', '.join(sorted(BUILTIN_BACKENDS))}) or 'package.module:Class'"
        )
    return spec


def is_allowed(name: str, allowed: Iterable[str]) -> bool:
    """True if ``name`` names the same backend as one entry of ``allowed`` (no import)."""
    try:
        wanted = canonical_name(name)
    except BackendNotAllowed:
        return False
    for entry in allowed:
        try:
            if canonical_name(entry) == wanted:
                return True
        except BackendNotAllowed:
            continue
    return False


def load_backend(name: str, allowed: Iterable[str]) -> Backend:
    """Import and instantiate the backend ``name`` if ``allowed`` lists it."""
    allowed = list(allowed)
    if not is_allowed(name, allowed):
        raise BackendNotAllowed(
            f"backend {name!r} is not in the allowlist {sorted(allowed)!r}; "
            "add it to the node's allowed backends to use it"
        )
    module_name, class_name = canonical_name(name).split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendLoadError(f"cannot import backend module {module_name!r}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise BackendLoadError(f"{module_name!r} has no class {class_name!r}")
    from zraft.objects.methods import is_replicated_class

    if is_replicated_class(cls):
        from zraft.objects.backend import ObjectBackend

        return ObjectBackend(cls, name=canonical_name(name))
    instance = cls()
    if not isinstance(instance, Backend):
        raise BackendLoadError(f"{name!r} does not implement the Backend protocol")
    return instance


__all__ = [
    "BUILTIN_BACKENDS",
    "BackendLoadError",
    "BackendNotAllowed",
    "canonical_name",
    "is_allowed",
    "load_backend",
]
