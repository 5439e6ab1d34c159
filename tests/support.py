"""Real services for the tests (Orthanc, the node, storescu): see :mod:`node.bench.services`."""
from node.bench.services import NodeProcess, OrthancServer, free_port, node_config, start_node, storescu, wait_for

__all__ = ["NodeProcess", "OrthancServer", "free_port", "node_config", "start_node", "storescu", "wait_for"]
