"""Adversarial tests: each file tries to break one guarantee of docs/design.md with real
servers and real files.  The ``test_a*`` files each reproduced a break found in the
attack round on issue 12 (they failed before its fixes and are kept as regression
tests); the ``test_h*`` files are probes the code withstood.

Shared fixtures: the engine's ``make_node`` / ``store_url`` (nodes in this process, each
with its own store connection and Redis subscription) and the regression suite's
``make_app_node``.
"""

from tests.engine.conftest import make_node, store_url  # noqa: F401
from tests.regressions.conftest import make_app_node  # noqa: F401
