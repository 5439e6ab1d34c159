"""A job's applicability: its score, its model's threshold, and what its route did with it.

Three columns of ``jobs`` (schema version 6 of SQLite, 4 of PostgreSQL), set when the job is
written (:func:`node.pipeline.applicability.note_applicability`) and read with the job.
"""
from __future__ import annotations

from .jobs import JobQueries

__all__ = ["ApplicabilityQueries"]


class ApplicabilityQueries(JobQueries):
    """Writes a job's applicability columns (read with the job: :class:`~node.store.rows.JobRow`)."""

    def set_job_applicability(self, job_id: int, score: float, threshold: float, action: str) -> None:
        """Record the job's score, its model's threshold and the action (``none`` when in the domain)."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET applicability_score=?, applicability_threshold=?, out_of_domain_action=? "
                       "WHERE id=?", (float(score), float(threshold), str(action), job_id))
