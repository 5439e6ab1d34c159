"""What every destination type provides to the outbox: one :class:`Sender` per destination.

The outbox claims due results, hands them to its destination's sender as
:class:`OutgoingFile` items and gets back a :class:`DeliveryOutcome` (per file: ``None``
when stored, else why not); retries, backoff and dead letters stay in the outbox, the
same for every type. The type of a ``[[destinations]]`` entry picks its sender here, in
:func:`sender_for`, and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from ..config import DestinationConfig

__all__ = ["DeliveryOutcome", "OutgoingFile", "Sender", "close_sender", "release_idle", "sender_for"]


@dataclass(frozen=True)
class OutgoingFile:
    """One result object to deliver.

    Attributes
    ----------
    path
        The DICOM file as written by the result writer (Part 10, with its file meta).
    sop_class_uid, sop_instance_uid
        Of the object in the file.
    model
        The model (route ``model``) whose job made it; a destination may tag the study
        with it (Orthanc labels).
    """

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    model: str


@dataclass(frozen=True)
class DeliveryOutcome:
    """Per file path: ``None`` when stored, else the reason it was not."""

    errors: dict[str, str | None]


class Sender(Protocol):
    """Delivers files to one destination; one instance per destination, used by one thread."""

    def send(self, files: Sequence[OutgoingFile]) -> DeliveryOutcome:
        """Try to store every file once; never raises for a delivery problem.

        Every path of ``files`` is a key of the result: a file missing from it counts as
        not sent.
        """
        ...


def sender_for(destination: DestinationConfig, *, calling_ae: str, timeout: float, idle_seconds: float = 0.0) -> Sender:
    """The sender for ``destination``'s ``type``.

    Parameters
    ----------
    destination
        A validated ``[[destinations]]`` entry.
    calling_ae
        The node's AE title (DIMSE destinations).
    timeout
        Seconds any one network operation may take (``[egress] timeout_seconds``).
    idle_seconds
        DIMSE: keep the association open this long between deliveries
        (``[egress] association_idle_seconds``; 0: one association per batch).
    """
    # The implementations import this module for the types above, so they are imported
    # here; the HTTP clients are only loaded when a destination of their type exists.
    if destination.type == "dimse":
        from .dimse import DimseSender

        return DimseSender(destination, calling_ae=calling_ae, timeout=timeout, idle_seconds=idle_seconds)
    if destination.type == "dicomweb":
        from .dicomweb import DicomwebSender

        return DicomwebSender(destination, timeout=timeout)
    if destination.type == "orthanc":
        from .orthanc import OrthancSender

        return OrthancSender(destination, timeout=timeout)
    raise ValueError(f"destination {destination.name!r}: unknown type {destination.type!r}")


def release_idle(sender: Sender) -> None:
    """Let ``sender`` release connections idle long enough (senders that keep some)."""
    close_idle = getattr(sender, "close_idle", None)
    if close_idle is not None:
        close_idle()


def close_sender(sender: Sender) -> None:
    """Release every connection ``sender`` keeps (at the outbox's stop)."""
    close = getattr(sender, "close", None)
    if close is not None:
        close()
