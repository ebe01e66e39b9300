"""Replicated Python objects: a class with ``@replicated`` / ``@query`` methods is a zraft
state machine, and a handle calls its methods on the cluster (PySyncObj's model, over
zraft's nodes, sessions and msgpack).

- ``methods``: the decorators and the per-class method table.
- ``calls``: the wire shape of a call ``[name, args, kwargs]``.
- ``backend``: ``ObjectBackend``, the Backend a node runs for such a class.
- ``state``: snapshots of an object's state (msgpack, versioned).
- ``handle``: ``connect_object`` and ``ObjectHandle`` (blocking, future and await calls).
- ``futures``: the done-callback future behind the ``await`` form.
- ``builtins``, ``locks``: the ready-made objects (``zraft.objects:Counter`` etc.).
"""

from zraft.objects.backend import ObjectBackend
from zraft.objects.builtins import Counter, Dict, List, Queue, Set
from zraft.objects.handle import ObjectHandle, connect_object, create
from zraft.objects.locks import LockHandle, LockManager
from zraft.objects.methods import backend_name, is_replicated_class, query, replicated

__all__ = [
    "Counter",
    "Dict",
    "List",
    "LockHandle",
    "LockManager",
    "ObjectBackend",
    "ObjectHandle",
    "Queue",
    "Set",
    "backend_name",
    "connect_object",
    "create",
    "is_replicated_class",
    "query",
    "replicated",
]
