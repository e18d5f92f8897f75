"""The one-command demo: ``python -m services.demo`` (``make demo``).

Starts a Redis if none is at hand, the resync job and three API nodes sharing one
SQLite store, then walks a scenario across the nodes, printing and checking each
step.  ``--keep-running`` (``make up``) keeps the cluster up until Ctrl-C instead.
"""
