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
- Whatever goes wrong once the name is allowed (the import fails or raises, the class is
  missing, its constructor raises, it lacks Backend methods) is one ``BackendLoadError``
  whose message is one line naming the cause (``ModuleNotFoundError: No module named
  'mymod'``): it is what the node answers the client and prints on stderr. The traceback
  stays in the node's log.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterable

from zraft.errors import BackendError, BackendNotAllowed
from zraft.fsm.backend import Backend, reraise_interrupt
from zraft.saferepr import exception_line, safe_repr

log = logging.getLogger(__name__)

BUILTIN_BACKENDS: dict[str, str] = {"dict": "zraft.backends.dict:DictBackend",
                                   "sqlite": "zraft.backends.sqlite:SqliteBackend"}
BACKEND_METHODS = ("init", "query", "apply", "apply_in_session", "expire_session", "snapshot",
                   "snapshot_done", "snapshot_failed", "install_snapshot")

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_SPEC = re.compile(rf"^({_DOTTED}):([A-Za-z_][A-Za-z0-9_]*)$")


class BackendLoadError(BackendError):
    """An allowed backend could not be imported, found, instantiated or initialised."""

    code = "backend_error"


def canonical_name(name: str) -> str:
    """``"module:Class"`` for an alias or a spec; raises BackendNotAllowed if malformed."""
    spec = BUILTIN_BACKENDS.get(name.strip(), name.strip())
    if not _SPEC.match(spec):
        raise BackendNotAllowed(
            f"invalid backend name {safe_repr(name)}: use a built-in alias "
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
            f"backend {safe_repr(name)} is not in the allowlist {sorted(allowed)!r}; "
            "add it to the node's allowed backends to use it"
        )
    module_name, class_name = canonical_name(name).split(":")
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:
        reraise_interrupt(exc)
        log.warning("backend %s: import of %s failed", name, module_name, exc_info=True)
        # a module added since the last attempt is found next time (the import system
        # caches directory listings)
        importlib.invalidate_caches()
        raise BackendLoadError(exception_line(exc)) from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise BackendLoadError(f"module {module_name!r} has no class {class_name!r}")
    from zraft.objects.methods import is_replicated_class

    if is_replicated_class(cls):
        from zraft.objects.backend import ObjectBackend

        try:
            return ObjectBackend(cls, name=canonical_name(name))
        except BaseException as exc:
            reraise_interrupt(exc)
            log.warning("backend %s: %s() raised", name, class_name, exc_info=True)
            raise BackendLoadError(f"{class_name}() raised {exception_line(exc)}") from None
    missing = [m for m in BACKEND_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        raise BackendLoadError(f"{class_name} does not implement the Backend protocol "
                               f"(missing: {', '.join(missing)})")
    try:
        instance = cls()
    except BaseException as exc:
        reraise_interrupt(exc)
        log.warning("backend %s: %s() raised", name, class_name, exc_info=True)
        raise BackendLoadError(f"{class_name}() raised {exception_line(exc)}") from None
    return instance


def probe_backend(name: str, allowed: Iterable[str], peer_id: str) -> None:
    """Check, before anything is created, that a peer of ``peer_id`` could run ``name``:
    allowed, importable, constructible, and its ``init`` does not raise (on an instance
    thrown away after)."""
    instance = load_backend(name, allowed)
    try:
        instance.init(peer_id)
    except BaseException as exc:
        reraise_interrupt(exc)
        log.warning("backend %s: init raised", name, exc_info=True)
        raise BackendLoadError(f"{type(instance).__name__}.init raised "
                               f"{exception_line(exc)}") from None


__all__ = [
    "BACKEND_METHODS",
    "BUILTIN_BACKENDS",
    "BackendLoadError",
    "BackendNotAllowed",
    "canonical_name",
    "is_allowed",
    "load_backend",
    "probe_backend",
]
