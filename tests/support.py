"""Real services for the tests (Orthanc, the node, storescu): see :mod:`benchmarks.services`."""
from benchmarks.services import HEAD_CT_ROUTE, NodeProcess, OrthancServer, free_port, node_config, start_node, storescu, wait_for

__all__ = ["HEAD_CT_ROUTE", "NodeProcess", "OrthancServer", "free_port", "node_config", "start_node", "storescu", "wait_for"]
