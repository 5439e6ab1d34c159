"""One DIMSE association to a destination, kept open across deliveries and jobs.

Opening an association costs a TCP (and, with DICOM TLS, a TLS) handshake and an
A-ASSOCIATE round trip for every batch; a result sent seconds after the previous one
pays none of that on a kept association. :class:`AssociationPool` holds at most one
association per destination (one outbox thread uses it), and:

- releases it after ``idle_seconds`` without a C-STORE (below the peer's own idle
  close: Orthanc's ``DicomScpTimeout`` is 30 s by default);
- checks one idle for more than ``echo_after_seconds`` with a C-ECHO before using it,
  and opens a fresh one when the check fails or the peer has closed it;
- proposes every result SOP Class the node writes (and any other a file needs, by
  opening a new association that adds it), so objects of every kind share it.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable

from pynetdicom import AE
from pynetdicom.association import Association
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from ..config import DestinationConfig
from ..ingest import REQUESTOR_HANDLERS
from ..dicom.tls import client_context

__all__ = ["AssociationPool", "RESULT_SOP_CLASSES", "VERIFICATION"]

VERIFICATION = "1.2.840.10008.1.1"

RESULT_SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.66.4",   # Segmentation
    "1.2.840.10008.5.1.4.1.1.66.7",   # Label Map Segmentation
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection
    "1.2.840.10008.5.1.4.1.1.7",      # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",    # Multi-frame True Color SC
    "1.2.840.10008.5.1.4.1.1.104.3",  # Encapsulated STL
)
"""The SOP Classes the node's result writers produce, proposed on every association."""

_TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


class AssociationPool:
    """The kept association of one destination (not thread-safe: one outbox thread uses it).

    Parameters
    ----------
    destination
        A ``type = "dimse"`` destination (``tls`` honoured as by a one-off association).
    calling_ae
        The node's AE title.
    timeout
        ACSE, DIMSE and network timeout of the association (seconds).
    idle_seconds
        An association unused this long is released (> 0).
    echo_after_seconds
        An association unused this long is checked with C-ECHO before it is used.
    clock
        Monotonic seconds (tests pass their own).
    """

    def __init__(
        self, destination: DestinationConfig, *, calling_ae: str, timeout: float, idle_seconds: float = 25.0,
        echo_after_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_seconds <= 0:
            raise ValueError(f"idle_seconds must be > 0, not {idle_seconds!r}")
        self._destination = destination
        self._calling_ae = calling_ae
        self._timeout = timeout
        self._idle_seconds = idle_seconds
        self._echo_after = echo_after_seconds
        self._clock = clock
        self._classes: set[str] = set(RESULT_SOP_CLASSES)
        self._assoc: Association | None = None
        self._used_at = 0.0
        self._lock = threading.Lock()
        self.opened = 0
        """Associations opened so far (for tests and logs)."""

    def acquire(self, sop_classes: Iterable[str]) -> tuple[Association, bool]:
        """An established association accepting ``sop_classes``, and whether it was reused.

        Raises
        ------
        ConnectionError
            When no association can be established (the reason in the message).
        """
        needed = set(sop_classes)
        with self._lock:
            assoc = self._assoc
            if assoc is not None and not self._usable(assoc, needed):
                self._drop()
                assoc = None
            if assoc is not None:
                return assoc, True
            self._classes |= needed
            self._assoc = self._open()
            self._used_at = self._clock()
            return self._assoc, False

    def mark_used(self) -> None:
        """Record a DIMSE exchange now (restarts the idle clock)."""
        self._used_at = self._clock()

    def discard(self) -> None:
        """Abort the kept association (it failed mid-exchange); the next acquire opens a new one."""
        with self._lock:
            if self._assoc is not None:
                self._assoc.abort()
                self._assoc = None

    def close_idle(self) -> None:
        """Release the association when it has been idle ``idle_seconds`` or its peer closed it."""
        with self._lock:
            if self._assoc is not None and (
                not self._assoc.is_established or self._clock() - self._used_at >= self._idle_seconds
            ):
                self._drop()

    def close(self) -> None:
        """Release the kept association, if any."""
        with self._lock:
            self._drop()

    def _usable(self, assoc: Association, needed: set[str]) -> bool:
        if not assoc.is_established:
            return False
        idle = self._clock() - self._used_at
        if idle >= self._idle_seconds:
            return False
        if needed - self._classes:
            return False  # a class never proposed: open an association that proposes it too
        if idle >= self._echo_after:
            try:
                status = assoc.send_c_echo()
            except Exception:
                return False
            if getattr(status, "Status", None) != 0x0000 or not assoc.is_established:
                return False
            self._used_at = self._clock()
        return True

    def _open(self) -> Association:
        destination = self._destination
        ae = AE(ae_title=self._calling_ae)
        ae.maximum_pdu_size = 0
        ae.acse_timeout = self._timeout
        ae.dimse_timeout = self._timeout
        ae.network_timeout = self._timeout
        for sop_class in [VERIFICATION, *sorted(self._classes - {VERIFICATION})][:128]:
            ae.add_requested_context(sop_class, _TRANSFER_SYNTAXES)
        tls_args = None
        if destination.tls:
            tls_args = (client_context(destination.ca, destination.cert, destination.key), str(destination.host))
        try:
            assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title,
                                 evt_handlers=REQUESTOR_HANDLERS, tls_args=tls_args)
        except Exception as exc:
            raise ConnectionError(f"association failed: {exc!r}") from exc
        if not assoc.is_established:
            reason = "association rejected" if assoc.is_rejected else "association not established"
            raise ConnectionError(f"{reason} by {destination.host}:{destination.port}")
        self.opened += 1
        return assoc

    def _drop(self) -> None:
        assoc, self._assoc = self._assoc, None
        if assoc is None:
            return
        try:
            if assoc.is_established:
                assoc.release()
            else:
                assoc.abort()
        except Exception:
            pass
