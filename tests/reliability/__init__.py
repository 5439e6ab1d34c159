"""Reliability suite: the node under faults (kill -9, PACS outage, full disk, fuzzing,
concurrent senders) with a real Orthanc and dcmtk. The scenarios live in
:mod:`benchmarks.faults` and run at larger counts with ``ainode bench faults``."""

SEED = 20261124
"""Every scenario's seed: a failure reruns with the same decisions (kill phases and
moments, mutations, PDUs); only UIDs and timings differ."""
