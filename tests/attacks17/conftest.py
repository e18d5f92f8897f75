"""The engine tests' node factory, for the issue-17 attacks."""

from tests.engine.conftest import make_node

__all__ = ["make_node"]
