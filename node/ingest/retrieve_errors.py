"""The error every way of retrieving a study from a source raises."""
from __future__ import annotations

__all__ = ["RetrieveError"]


class RetrieveError(RuntimeError):
    """The source could not give the study (unknown study, source unreachable, refused)."""
