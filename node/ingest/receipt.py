"""What became of one received instance: the outcome, the duplicate policy and the answer.

:class:`Receipt` is what :class:`~node.ingest.accept.InstanceAcceptor` answers for one
instance; :class:`Outcome` and :class:`DuplicateAction` are the label values of the
ingest metrics; :class:`OnDuplicate` is ``[ingest] on_duplicate``.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .header import InstanceHeader

__all__ = ["DuplicateAction", "OnDuplicate", "Outcome", "Receipt"]


class Outcome(str, Enum):
    """What became of an instance; the ``stored``, ``duplicate`` and ``replaced`` values are
    ``ainode_instances_received_total`` labels (a refusal counts as ``error``)."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    REPLACED = "replaced"
    REFUSED = "refused"


class OnDuplicate(str, Enum):
    """What a new copy of a held instance with *different* content does (``[ingest] on_duplicate``)."""

    KEEP_FIRST = "keep-first"
    """The first copy stays; the new one is answered Success and dropped (counted, logged)."""
    REPLACE = "replace"
    """The new copy replaces the file and is indexed again (a routed series sees it as late)."""


class DuplicateAction(str, Enum):
    """What was done with a copy of a held instance: the ``ainode_instances_duplicate_total`` labels."""

    IDENTICAL = "identical"
    """The same bytes again: nothing to do."""
    KEPT_FIRST = "kept_first"
    """Different content, dropped (``keep-first``)."""
    REPLACED = "replaced"
    """Different content, kept instead of the first (``replace``)."""
    REPLACED_QUARANTINED = "replaced_quarantined"
    """The first copy was quarantined (its header unusable): the new one always replaces it."""


@dataclass(frozen=True)
class Receipt:
    """The answer for one instance.

    Attributes
    ----------
    outcome
        Stored now, stored before (``duplicate``), or refused.
    status
        The DIMSE status to answer: Success (0x0000) for a stored or duplicate
        instance, else the failure status of the refusal.
    reason
        For a refusal, its ``ainode_instances_rejected_total`` label (``unreadable``,
        ``invalid_uid``, ``uid_mismatch``, ``unsupported_syntax``, ``too_large``,
        ``disk_full``, ``out_of_resources``); ``None`` otherwise.
    header
        The UIDs read from the instance's header, when it got that far.
    """

    outcome: Outcome
    status: int
    reason: str | None = None
    header: InstanceHeader | None = None

    @property
    def accepted(self) -> bool:
        """Whether the instance is durable and recorded (now or before)."""
        return self.outcome is not Outcome.REFUSED
