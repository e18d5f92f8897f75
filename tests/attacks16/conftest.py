"""The contract tests' store fixtures, for the issue-16 attacks."""

from tests.contract.conftest import backend, store, store_factory, store_url

__all__ = ["backend", "store", "store_factory", "store_url"]
