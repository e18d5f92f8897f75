"""The security tests run real node processes (the deployment fixtures)."""

from tests.services.conftest import start_node

__all__ = ["start_node"]
