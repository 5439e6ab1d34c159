"""The radiologist's verdict on a job's results: accepted, or rejected with a reason.

Each review is a row of ``reviews`` (who, when, verdict, reason) and an event in the job's
history. A rejection also withdraws the results: those not yet sent are not sent, and
those delivered are marked for retraction in the same transaction (the outbox of each
destination then retracts them: :mod:`node.egress.retraction`).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from .jobs import JobQueries
from ..states import RetractCause
from .retraction_marks import mark_for_retraction

__all__ = ["RejectReason", "Review", "ReviewQueries", "Verdict"]


class Verdict(StrEnum):
    """The radiologist's verdict on a job's results."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"


class RejectReason(StrEnum):
    """Why results were rejected."""

    WRONG_FINDING = "wrong finding"
    MISSED_FINDING = "missed finding"
    WRONG_PATIENT_OR_SERIES = "wrong patient or series"
    IMAGE_QUALITY = "image quality"


@dataclass(frozen=True)
class Review:
    """One verdict on one job."""

    id: int
    job_id: int
    verdict: Verdict
    reason: RejectReason | None
    reviewer: str
    comment: str | None
    at: float
    retracting: int = 0
    """Results marked for retraction by this verdict (a rejection)."""

    def as_dict(self) -> dict[str, Any]:
        """The review as the API shows it."""
        return asdict(self)


class ReviewQueries(JobQueries):
    """The ``reviews`` table."""

    def add_review(
        self, job_id: int, verdict: Verdict, reviewer: str, reason: RejectReason | None = None,
        comment: str | None = None,
    ) -> Review | None:
        """Record a verdict (None: no such job); a rejection withdraws the job's results."""
        if (verdict is Verdict.REJECTED) != (reason is not None):
            raise ValueError("a rejection needs a reason, an acceptance has none")
        now = time.time()
        with self._tx() as db:
            if db.execute(f"SELECT 1 AS found FROM jobs WHERE id=?{self._dialect.lock_row}", (job_id,)).fetchone() is None:
                return None
            review_id = int(db.execute(
                "INSERT INTO reviews(job_id, verdict, reason, reviewer, comment, at) VALUES (?,?,?,?,?,?) RETURNING id",
                (job_id, verdict.value, reason.value if reason else None, reviewer, comment, now),
            ).fetchone()["id"])
            self._event(db, "job", job_id, verdict, f"by {reviewer}" + (f": {reason.value}" if reason else ""))
            marked = 0
            if verdict is Verdict.REJECTED:
                self._drop_unsent_results(db, job_id)  # not sent yet: never sent
                marked = mark_for_retraction(db, job_id, RetractCause.REJECTED, now)
                self._settle_job(db, job_id)
                self._notify(db, "results")
        return Review(review_id, job_id, verdict, reason, reviewer, comment, now, marked)

    def job_reviews(self, job_id: int) -> list[Review]:
        """The verdicts on a job, oldest first."""
        rows = self._query("SELECT id, job_id, verdict, reason, reviewer, comment, at FROM reviews WHERE job_id=?"
                           " ORDER BY id", (job_id,))
        return [Review(r["id"], r["job_id"], Verdict(r["verdict"]), RejectReason(r["reason"]) if r["reason"] else None,
                       r["reviewer"], r["comment"], r["at"]) for r in rows]
