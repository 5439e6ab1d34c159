"""What the senders that reach their destination over HTTP (DICOMweb, Orthanc) share."""
from __future__ import annotations

from typing import ClassVar

from ..config import DestinationConfig

__all__ = ["HttpSender"]


class HttpSender:
    """The base of an HTTP sender: a destination that has a ``url``, and a timeout.

    Parameters
    ----------
    destination
        A ``[[destinations]]`` entry of the sender's type; its ``url`` is required.
    timeout
        Seconds any one HTTP request may take.

    Raises
    ------
    ValueError
        When the destination has no ``url``; the message names the destination.
    """

    DESTINATION_TYPE: ClassVar[str]
    """The destination type with its article, as the error names it (``"a dicomweb"``)."""

    def __init__(self, destination: DestinationConfig, *, timeout: float) -> None:
        if destination.url is None:
            raise ValueError(
                f"destination {destination.name!r}: {self.DESTINATION_TYPE} destination needs a url"
            )
        self._destination = destination
        self._timeout = timeout
