"""Small apps built on zraft (see README.md, "Your own state machine")."""
