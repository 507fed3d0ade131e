"""The systems ``benchmarks/peers.py`` compares: one app module per system, run by its workers."""
