"""The pipeline between ingest and delivery: index, assemble, route, study routes, run, retain.

Each stage consumes work in one state of :mod:`node.states` and leaves it in another;
:mod:`node.pipeline.stages` holds the table of stages that wires them together.
"""
