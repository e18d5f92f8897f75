"""The registry tests reuse the deployment fixtures: API nodes as hypercorn processes."""

from tests.services.conftest import start_node, store_url_for

__all__ = ["start_node", "store_url_for"]
