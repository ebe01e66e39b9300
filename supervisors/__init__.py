"""Generic one-for-one supervision for Pykka actors (knows nothing about zraft).

Rules:
- Nothing in this package imports `zraft`; a test parses the imports to keep it so.
- Public API: `OneForOneSupervisor`, `ChildSpec`, `Restart`, `SupervisedMixin`,
  `ChildHandle`, `ExitInfo`/`ExitKind`, `ChildInfo`, `with_supervised_mixin` and the
  `SupervisorError` family.
- See docs/supervisors.md for the failure paths and the threading story.
"""

from supervisors.directory import ChildHandle
from supervisors.mixin import SupervisedMixin, with_supervised_mixin
from supervisors.spec import (
    Backoff,
    ChildAlreadyExistsError,
    ChildInfo,
    ChildNotFoundError,
    ChildNotRunningError,
    ChildRunningError,
    ChildSpec,
    ChildStartError,
    ExitInfo,
    ExitKind,
    Restart,
    SupervisorError,
)
from supervisors.supervisor import OneForOneSupervisor

__all__ = [
    "Backoff",
    "ChildAlreadyExistsError",
    "ChildHandle",
    "ChildInfo",
    "ChildNotFoundError",
    "ChildNotRunningError",
    "ChildRunningError",
    "ChildSpec",
    "ChildStartError",
    "ExitInfo",
    "ExitKind",
    "OneForOneSupervisor",
    "Restart",
    "SupervisedMixin",
    "SupervisorError",
    "with_supervised_mixin",
]
