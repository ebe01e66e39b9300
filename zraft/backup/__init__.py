"""Backup and restore of a group: ``zraft snapshot save`` / ``zraft snapshot restore``."""
