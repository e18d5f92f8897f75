"""The registry tests reuse the deployment fixtures: API nodes as hypercorn processes,
and the in-process ``store_url`` (one store of each kind) of the engine tests."""

from tests.engine.conftest import store_url
from tests.services.conftest import start_node, store_url_for

__all__ = ["start_node", "store_url", "store_url_for"]
