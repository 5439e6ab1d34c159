"""The sender for each destination type: a ``[[destinations]]`` entry's type picks its
:class:`~node.egress.delivery.Sender` here, in :func:`sender_for`, and nowhere else."""
from __future__ import annotations

from ..config import DestinationConfig
from .delivery import Sender

__all__ = ["close_sender", "release_idle", "sender_for"]


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
    # The HTTP clients are only loaded when a destination of their type exists.
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
