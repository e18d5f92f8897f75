"""The start-up resync job: ``python -m services.resync [--wait SECONDS] [--new-epoch]``.

A thin wrapper over ``revsync check`` (``revsync.cli``), kept so the compose file and
the tests can run the job from a checkout: run it once before the API nodes take
traffic.  Exit 0 when all is well; otherwise a one-line message on stderr and a
non-zero exit (2: bad configuration, 3: unreachable, 1: store check failed).
"""
