"""What the example nodes (``services.api``, ``services.cookie_example``) share
(their health and metrics endpoints come from ``revsync.health`` and
``revsync.prometheus``).

- ``node``: building the app (logging, RevSync, the JWT layer, JSON errors), the
  accessor for the app's RevSync, the seed program's login check, and the exit with a
  one-line reason on a bad setting;
- ``logs``: revsync's lines through stdlib ``logging``, as text or JSON;
- ``errors``: ``{"msg": ...}`` answers for every error, and request body checks.
"""
