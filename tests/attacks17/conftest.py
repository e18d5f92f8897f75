"""Fixtures for the issue-17 attacks: the engine tests' node factory and the contract
tests' stores."""

from tests.contract.conftest import backend, store, store_factory, store_url
from tests.engine.conftest import make_node

__all__ = ["backend", "make_node", "store", "store_factory", "store_url"]
