"""The audit record of each DICOM connection: who called, from where, what was decided, what was stored.

One JSON log line (logger ``ainode.audit``, ``"audit": "association"``) when a connection
closes: calling and called AE titles, peer address, whether it came over TLS (and the
client certificate's subject common name, when one was presented), the outcome
(``accepted``, ``rejected``, or ``no_association`` for a connection that never asked)
with the reason, instances stored and bytes received. UIDs and patient data are not part
of it.

The reason of a ``no_association`` record: ``tls: <why>`` for a failed TLS handshake
(``no client certificate``, ``untrusted client certificate: unknown CA (...)``, ``old
protocol (TLS 1.2 or newer required)``, ``no shared cipher``, ``not TLS``, ``timed out
(5 s)``, ... see :func:`node.dicom.tls.handshake_failure`), ``no association request
within N s``, ``closed before an association request``, or ``dropped: ...`` (a pending
connection closed for a newer one). A rejected request records the called and calling
titles as the peer sent them, also when they are what got it rejected.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum

from pynetdicom.association import Association

from ..logs import audit
from ..dicom.tls import peer_common_name
from .connections import remote_address
from .titles import printable_title

__all__ = ["AssociationAudit", "AssociationOutcome"]


class AssociationOutcome(StrEnum):
    NO_ASSOCIATION = "no_association"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass
class _Record:
    peer: str
    tls: bool
    opened: float = field(default_factory=time.monotonic)
    outcome: AssociationOutcome = AssociationOutcome.NO_ASSOCIATION
    reason: str | None = None
    calling_ae: str | None = None
    called_ae: str | None = None
    client_cert: str | None = None
    instances: int = 0
    refused: int = 0
    bytes: int = 0


class AssociationAudit:
    """Collects what happens on each connection; writes its line when the connection closes."""

    def __init__(self, request_timeout: float | None = None) -> None:
        self._lock = threading.Lock()
        self._records: dict[Association, _Record] = {}
        self._request_timeout = request_timeout

    def no_association(self, peer: str, reason: str, *, tls: bool, client_cert: str | None = None,
                       seconds: float = 0.0) -> None:
        """A connection that ended before pynetdicom saw it (a failed TLS handshake): its record at once."""
        audit("association", outcome=AssociationOutcome.NO_ASSOCIATION.value, reason=reason, calling_ae=None,
              called_ae=None, peer=peer, tls=tls, client_cert=client_cert, instances=0, refused=0, bytes=0,
              seconds=round(seconds, 3))

    def dropped(self, assoc: Association, reason: str) -> None:
        """A pending connection is being closed by the node (for a newer one)."""
        with self._lock:
            record = self._records.get(assoc)
            if record is not None and record.reason is None:
                record.reason = reason

    def opened(self, assoc: Association, *, tls: bool) -> None:
        with self._lock:
            self._records[assoc] = _Record(remote_address(assoc), tls)

    def requested(self, assoc: Association, rejection: str | None = None, *,
                  called_ae: str | None = None, calling_ae: str | None = None) -> None:
        """The association request was answered: accepted (``rejection`` ``None``) or rejected, and why.

        ``called_ae``, ``calling_ae``: the titles as received (printable), when the decoded
        request no longer carries them (the title screen replaces a refused title).
        """
        request = assoc.requestor.primitive
        with self._lock:
            record = self._records.setdefault(assoc, _Record(remote_address(assoc), False))
            record.calling_ae = calling_ae if calling_ae is not None else printable_title(str(request.calling_ae_title))
            record.called_ae = called_ae if called_ae is not None else printable_title(str(request.called_ae_title))
            record.outcome = AssociationOutcome.ACCEPTED if rejection is None else AssociationOutcome.REJECTED
            record.reason = rejection
            record.client_cert = _client_cn(assoc) if record.tls else None

    def stored(self, assoc: Association, size: int, accepted: bool) -> None:
        """One C-STORE answered: ``size`` bytes received, stored (or already held) or refused."""
        with self._lock:
            record = self._records.get(assoc)
            if record is None:
                return
            record.bytes += size
            if accepted:
                record.instances += 1
            else:
                record.refused += 1

    def closed(self, assoc: Association) -> None:
        with self._lock:
            record = self._records.pop(assoc, None)
        if record is None:
            return
        seconds = time.monotonic() - record.opened
        reason = record.reason
        if record.outcome is AssociationOutcome.NO_ASSOCIATION and reason is None:
            timeout = self._request_timeout
            reason = (f"no association request within {timeout:g} s"
                      if timeout is not None and seconds >= timeout - 0.05 else "closed before an association request")
            if record.tls and record.client_cert is None:
                record.client_cert = _client_cn(assoc)
        audit("association", outcome=record.outcome.value, reason=reason, calling_ae=record.calling_ae,
              called_ae=record.called_ae, peer=record.peer, tls=record.tls, client_cert=record.client_cert,
              instances=record.instances, refused=record.refused, bytes=record.bytes, seconds=round(seconds, 3))


def _client_cn(assoc: Association) -> str | None:
    """The common name of the client certificate, when the TLS peer presented one."""
    return peer_common_name(assoc.dul.socket)
