"""ainode: an AI inference node beside a PACS.

The node is built of rooms, one per stage or service a reader looks for:

==============  =================================================================
``ingest/``     C-ECHO/C-STORE SCP, the acceptor (durable, recorded), retrieval
``pipeline/``   the stage table and the stages between ingest and delivery:
                index, assemble, route, study routes, run, retain
``worker/``     the worker process: one job (load, preprocess, infer,
                postprocess, write) and read-ahead
``packs/``      the model-pack protocol and the registry of packs
``engines/``    ONNX Runtime, TensorRT, PyTorch, Triton
``results/``    DICOM result writers (SEG, SR, KOS, SC, STL)
``egress/``     the outbox and its senders (DIMSE, DICOMweb, Orthanc)
``store/``      the job store (SQLite, PostgreSQL) and the spool of files
``http/``       the HTTP API, authentication, sessions, STOW-RS and the pages
``metrics/``    Prometheus metrics
``dicom/``      DICOM helpers: TLS, UIDs, the C-STORE SCU, frames, slice placement
``config/``     the configuration: schema, parsing, checks, embedded defaults
==============  =================================================================

Directly here: :mod:`node.cli` (the ``ainode`` command), :mod:`node.service` (the node,
every component wired together), :mod:`node.states` (every state and transition),
:mod:`node.logs` and :mod:`node.redact` (JSON logs without patient data) and
:mod:`node.ports`.
"""
