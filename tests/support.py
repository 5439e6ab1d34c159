"""Real services for the tests (Orthanc, the node, storescu): see :mod:`node.bench.services`."""
from node.bench.services import HEAD_CT_ROUTE, NodeProcess, OrthancServer, free_port, node_config, start_node, storescu, wait_for

__all__ = ["HEAD_CT_ROUTE", "NodeProcess", "OrthancServer", "free_port", "node_config", "start_node", "storescu", "wait_for"]
