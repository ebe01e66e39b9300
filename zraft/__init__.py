"""zraft: a Raft consensus library and server for Python (a re-creation of zraft_lib)."""

import logging

logging.getLogger("zraft").addHandler(logging.NullHandler())

__all__: list[str] = []
