"""config.example.toml documents every key with its default, and parses."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

from zraft.config import LogConfig, NodeConfig, RaftConfig, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def test_example_parses_and_documents_every_key_with_its_default() -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    raw["node"]["cookie"] = "c"
    cfg = parse_config(raw)
    for section, cls, obj in (("node", NodeConfig, cfg), ("raft", RaftConfig, cfg.raft),
                              ("logging", LogConfig, cfg.logging)):
        default = cls() if cls is not NodeConfig else NodeConfig(cookie="c")
        for f in fields(cls):
            if f.name in ("raft", "logging"):
                continue
            assert f.name in raw[section], f"{section}.{f.name} missing from the example"
            assert getattr(obj, f.name) == getattr(default, f.name), f"{section}.{f.name}"
