"""Benchmarks, fault injection and fuzzing of the node (``ainode bench ...``).

Kept out of the product package: they start nodes, Orthanc and PostgreSQL, make
phantoms and send them, and write their figures to ``benchmarks/RESULTS.md``.
"""
