"""Per-system apps and adapters of ``benchmarks/pg_peers.py`` (standard library only at import)."""
