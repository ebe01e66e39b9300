"""The pure Raft core: no sockets, threads, files, clocks or global randomness.

Everything under ``zraft.core`` imports only the standard library's pure modules and
``zraft.core`` itself (a test enforces this). Time arrives as ticks, randomness from an
injected ``random.Random``, wall-clock stamps as plain integers.
"""
