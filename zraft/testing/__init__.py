"""Testing helpers importable by users: the deterministic simulator (``sim``), safety
invariants (``invariants``), a linearizability checker (``linearizability``) and the seed
sweep runner (``sweep``)."""
