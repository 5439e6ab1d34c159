"""C-STORE SCU delivery of result objects to one DIMSE destination, over DICOM TLS when it says ``tls = true``."""
from __future__ import annotations

from typing import Sequence

from pynetdicom import AE
from pynetdicom.association import Association
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..config import DestinationConfig
from ..ingest import REQUESTOR_HANDLERS
from ..dicom.tls import client_context
from .associations import AssociationPool
from ..store.rows import ResultObject
from .delivery import DeliveryOutcome

__all__ = ["DimseSender", "send_files"]

_OK_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}  # success and the storage warnings


class DimseSender:
    """C-STORE to a ``type = "dimse"`` destination.

    With ``idle_seconds`` > 0 the association is kept open across batches and jobs
    (:class:`~node.egress.associations.AssociationPool`); with 0, one association per
    batch, opened and released around it.
    """

    def __init__(self, destination: DestinationConfig, *, calling_ae: str, timeout: float,
                 idle_seconds: float = 0.0) -> None:
        self._destination = destination
        self._calling_ae = calling_ae
        self._timeout = timeout
        self._pool = (AssociationPool(destination, calling_ae=calling_ae, timeout=timeout, idle_seconds=idle_seconds)
                      if idle_seconds > 0 else None)

    @property
    def pool(self) -> AssociationPool | None:
        """The kept association of this destination (``None``: one association per batch)."""
        return self._pool

    def send(self, files: Sequence[ResultObject]) -> DeliveryOutcome:
        if self._pool is None:
            return send_files(self._destination, self._calling_ae, [(f.path, f.sop_class_uid) for f in files],
                              timeout=self._timeout)
        return _send_pooled(self._pool, [(f.path, f.sop_class_uid) for f in files])

    def close_idle(self) -> None:
        """Release the kept association once it has been idle long enough."""
        if self._pool is not None:
            self._pool.close_idle()

    def close(self) -> None:
        """Release the kept association."""
        if self._pool is not None:
            self._pool.close()


def _send_pooled(pool: AssociationPool, files: Sequence[tuple[str, str]]) -> DeliveryOutcome:
    """Send over the kept association; a reused one the peer dropped is replaced once."""
    errors: dict[str, str | None] = {}
    try:
        assoc, reused = pool.acquire({c for _, c in files})
    except ConnectionError as exc:
        return DeliveryOutcome({path: str(exc) for path, _ in files})
    for path, _ in files:
        error = _store(assoc, path)
        if error is not None and reused and not assoc.is_established:
            # the peer closed a kept association (idle close, restart): one fresh try
            pool.discard()
            try:
                assoc, reused = pool.acquire({c for _, c in files})
            except ConnectionError as exc:
                error = str(exc)
            else:
                error = _store(assoc, path)
        reused = reused and error is None
        errors[path] = error
        if error is None:
            pool.mark_used()
        elif not assoc.is_established:
            pool.discard()
    return DeliveryOutcome(errors)


def _store(assoc: Association, path: str) -> str | None:
    """C-STORE one file; ``None`` when stored, else why not."""
    if not assoc.is_established:
        return "association lost"
    try:
        status = assoc.send_c_store(path)
    except Exception as exc:
        return f"send failed: {exc!r}"
    code = getattr(status, "Status", None)
    return None if code in _OK_STATUSES else ("no response" if code is None else f"C-STORE status 0x{int(code):04X}")


def send_files(
    destination: DestinationConfig, calling_ae: str, files: Sequence[tuple[str, str]], timeout: float = 30.0
) -> DeliveryOutcome:
    """Send ``(path, sop_class_uid)`` files over one association.

    Files are sent as they are stored (explicit VR little endian). An association that
    cannot be made fails every file with the same reason. With ``tls``, the destination's
    certificate is verified against ``ca`` (else the system's CAs) for its ``host``, and
    ``cert`` + ``key`` are presented as the node's client certificate.
    """
    ae = AE(ae_title=calling_ae)
    ae.maximum_pdu_size = 0
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    for sop_class in sorted({c for _, c in files}):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    try:
        tls_args = None
        if destination.tls:
            tls_args = (client_context(destination.ca, destination.cert, destination.key), str(destination.host))
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title,
                             evt_handlers=REQUESTOR_HANDLERS, tls_args=tls_args)
    except Exception as exc:
        return DeliveryOutcome({path: f"association failed: {exc!r}" for path, _ in files})
    if not assoc.is_established:
        reason = "association rejected" if assoc.is_rejected else "association not established"
        return DeliveryOutcome({path: f"{reason} by {destination.host}:{destination.port}" for path, _ in files})
    errors: dict[str, str | None] = {}
    try:
        for path, _ in files:
            errors[path] = _store(assoc, path)
    finally:
        if assoc.is_established:
            assoc.release()
    return DeliveryOutcome(errors)
