"""Pykka shells around the pure parts: they feed inputs and carry out outputs, no Raft rules."""
