"""DICOM ingest: C-ECHO and C-STORE SCP, and the acceptor behind it.

**Accepted means durable and recorded.** An instance is answered Success only once its
header was understood, its bytes are durable on disk (fsync'd, renamed) and it is
recorded in the job store; a repeated SOP Instance UID is stored once and answered
Success again (a copy with different content is dropped or replaces the first, as
``[ingest] on_duplicate`` says; a quarantined first copy is always replaced). The node
accepts every transfer syntax it can decode here (:mod:`.syntaxes`) and stores the
bytes as received. The header (never the pixels) is read from the bytes as received: the
four UIDs the node files an instance by must be there, valid (PS3.5 §9.1) and agree
with what the sender claims. What cannot be understood is refused with a failure
status and leaves nothing on disk:

========================  ========  ==========================================
reason                    status    when
========================  ========  ==========================================
``unreadable``            0xC000    the header (or a Part-10 file's meta) does not
                                    parse, ends inside an element, or its deflate
                                    stream is broken
``invalid_uid``           0xC000    a Study, Series, SOP Instance or SOP Class UID
                                    is missing or not a valid UID
``unsupported_syntax``    0xC000    a Part-10 file in a transfer syntax the node does
                                    not accept (over DIMSE, negotiation keeps it out)
``uid_mismatch``          0xA900    the dataset's SOP Class or SOP Instance UID is not
                                    the one claimed (as dcmtk's storescp answers)
``too_large``             0xA700    the dataset, or its deflated content once
                                    inflated, exceeds ``max_dataset_bytes``
``disk_full``             0xA700    the spool is below its free-space floor, or the
                                    write failed for lack of space
``out_of_resources``      0xA700    any other failure to write or record
========================  ========  ==========================================

``too_large`` is answered 0xA700 (Refused: Out of Resources), not 0xC000: the dataset
may be perfectly understandable, it is the node's configured resource limit that it
exceeds, and that is what the operator of either side must read from the status.

**Hostile input is contained.** An association request is rejected (A-ASSOCIATE-RJ,
rejected-permanent, reason 3 or 7) unless its calling AE title is a proper one and its
called AE title the node's own (:mod:`.titles`); the calling titles recorded with
instances are therefore always checked ones. Received datasets go to a file as they
arrive and senders are asked for PDUs of at most 1 MiB, so an instance never sits
whole in memory (pynetdicom does not enforce that maximum: one PDU of a sender that
ignores it is read whole); the file of a transfer cut off midway is removed.

Connections are bounded too: a socket read that waits longer than ``network_timeout``
for the rest of a PDU ends the connection; a connection that has not asked for an
association within ``acse_timeout`` is closed; at most ``max_pending_connections``
such connections are kept (the oldest is dropped for a new one, so idle connections
never lock a modality out); and at most ``max_associations`` associations run at once,
the next request being rejected transiently (A-ASSOCIATE-RJ rejected-transient,
local-limit-exceeded, as pynetdicom's own limit answers) so that the sender retries.

Modules: :mod:`.header` reads and checks a header, :mod:`.accept` takes in one
instance whatever carried it (with :mod:`.claim`, what the sender claims for it,
:mod:`.receipt`, the answer and the duplicate policy, :mod:`.spool_files`, the file it
writes, and :mod:`.locks`, one writer per SOP Instance UID), :mod:`.titles` judges AE
titles, :mod:`.connections` tunes sockets and gates connections, :mod:`.server` is the
DIMSE listener, :mod:`.syntaxes` says which transfer syntaxes are accepted,
:mod:`.transfers` which series an association or a STOW-RS request released, and
:mod:`.retrieve` (with :mod:`.retrieve_dimse` and :mod:`.retrieve_errors`) fetches a
study from a source on request.
"""
from __future__ import annotations

from .accept import ACCEPTED_TRANSFER_SYNTAXES, DEFAULT_MAX_DATASET_BYTES, InstanceAcceptor
from .connections import REQUESTOR_HANDLERS, ack_replies_at_once, tune_connection
from .header import InstanceHeader, InstanceRefused, read_header
from .receipt import DuplicateAction, OnDuplicate, Outcome, Receipt
from .server import IngestServer

__all__ = [
    "ACCEPTED_TRANSFER_SYNTAXES",
    "DEFAULT_MAX_DATASET_BYTES",
    "REQUESTOR_HANDLERS",
    "DuplicateAction",
    "IngestServer",
    "InstanceAcceptor",
    "InstanceHeader",
    "InstanceRefused",
    "OnDuplicate",
    "Outcome",
    "Receipt",
    "ack_replies_at_once",
    "read_header",
    "tune_connection",
]
