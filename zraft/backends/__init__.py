"""Backends shipped with zraft. ``zraft.backends.dict.DictBackend`` is the reference one."""
