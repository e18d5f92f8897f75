"""The servers the benchmarks compare; each is served by ``hypercorn <module>:app``."""
