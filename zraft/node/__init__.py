"""The zraft node process: ``python -m zraft.node --config node.toml``."""

from zraft.node.main import main

__all__ = ["main"]
