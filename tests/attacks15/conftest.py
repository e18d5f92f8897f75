"""The issue-15 attack round's fixtures: the scale tests' real Sentinel and Cluster
topologies, in-process nodes and API node processes."""

from tests.engine.conftest import make_node
from tests.scale.conftest import cluster_setup, sentinel_setup
from tests.services.conftest import start_node

__all__ = ["cluster_setup", "make_node", "sentinel_setup", "start_node"]
