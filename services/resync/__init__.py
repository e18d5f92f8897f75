"""The start-up resync job: ``python -m services.resync``.

Run once before the API nodes take traffic: it checks the store and Redis are
reachable, creates the store's schema, prunes expired entries and verifies the
store's sequence.  Exit 0 when all is well; otherwise a one-line message on stderr
and a non-zero exit (2: bad configuration, 3: unreachable, 1: store check failed).
"""
