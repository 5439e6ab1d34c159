"""What every destination type provides to the outbox: a :class:`Sender` per destination.

The outbox claims due results, hands them to its destination's sender as
:class:`~node.store.ResultObject` items and gets back a :class:`DeliveryOutcome` (per
file: ``None`` when stored, else why not); retries, backoff and dead letters stay in the
outbox, the same for every type.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from ..store.rows import ResultObject

__all__ = ["DeliveryOutcome", "Sender"]


@dataclass(frozen=True)
class DeliveryOutcome:
    """Per file path: ``None`` when stored, else the reason it was not."""

    errors: dict[str, str | None]

    @classmethod
    def failed(cls, files: Sequence[ResultObject], reason: str) -> DeliveryOutcome:
        """Every file of ``files`` not stored, for the same ``reason``."""
        return cls({f.path: reason for f in files})


class Sender(Protocol):
    """Delivers files to one destination; one instance per destination, used by one thread."""

    def send(self, files: Sequence[ResultObject]) -> DeliveryOutcome:
        """Try to store every file once; never raises for a delivery problem.

        Every path of ``files`` is a key of the result: a file missing from it counts as
        not sent.
        """
        ...
