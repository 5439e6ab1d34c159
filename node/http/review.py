"""``POST /api/jobs/{id}/review``: the radiologist's verdict on a job's results.

Accepted, or rejected with a reason (:class:`~node.store.reviews.RejectReason`); recorded
with who gave it (the session, the API token or an anonymous caller, and the name the
radiologist types, if any) and when, in the job's history and in
``ainode_result_reviews_total{model,verdict}``. A rejection withdraws the job's results
from every destination (:mod:`node.egress.retraction`). The endpoint is behind the same
authentication and cross-site guard as every other state-changing request
(:mod:`node.http.auth`); the results page posts to it with ``fetch`` (its ``Origin`` is
the node's own).
"""
from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from ..logs import log
from ..metrics import Metrics
from ..states import JobState
from ..store import JobStore
from ..store.reviews import Verdict
from .auth import Credential
from .schemas import ReviewIn, ReviewOut
from .sessions import COOKIE_NAME

__all__ = ["review_router", "reviewer_identity"]

_logger = logging.getLogger("ainode.web")

_UNREVIEWABLE = frozenset({JobState.QUEUED, JobState.RUNNING})
"""A job with no results yet has nothing to review."""
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def reviewer_identity(request: Request, name: str | None = None) -> str:
    """Who is calling: ``session <id>`` (a digest of the session cookie, never the cookie), ``API token``
    or ``anonymous``, after the name the caller gives (if any)."""
    credential = getattr(request.state, "credential", None)
    if credential == Credential.SESSION:
        payload = request.cookies.get(COOKIE_NAME, "").rpartition(".")[0]
        who = "session " + hashlib.sha256(payload.encode("utf-8", "replace")).hexdigest()[:10]
    elif credential == Credential.BEARER:
        who = "API token"
    else:
        who = "anonymous"
    given = _UNPRINTABLE.sub("", name or "").strip()[:64]
    return f"{given} ({who})" if given else who


def review_router(store: JobStore, metrics: Metrics) -> APIRouter:
    """The review endpoint over ``store``; counts each verdict in ``metrics``."""
    router = APIRouter()

    @router.post("/api/jobs/{job_id}/review", response_model=ReviewOut,
                 summary="The radiologist's verdict: accept, or reject with a reason (retracts the results)")
    def review_job(job_id: int, body: ReviewIn, request: Request) -> dict[str, Any]:
        job = store.get_job(job_id)
        if job is None:
            raise HTTPException(404, "no such job")
        if (body.verdict is Verdict.REJECTED) != (body.reason is not None):
            raise HTTPException(422, "a rejection needs a reason (wrong finding, missed finding, wrong patient or"
                                     " series, image quality); an acceptance takes none")
        if job.state in _UNREVIEWABLE:
            raise HTTPException(409, f"job is {job.state}: no results to review yet")
        comment = _UNPRINTABLE.sub(" ", body.comment).strip() if body.comment else None
        review = store.add_review(job_id, body.verdict, reviewer_identity(request, body.reviewer),
                                  body.reason, comment or None)
        if review is None:
            raise HTTPException(404, "no such job")
        metrics.result_reviews.labels(job.model, body.verdict.value).inc()
        log(_logger, logging.INFO, "results reviewed", job_id=job_id, model=job.model, verdict=body.verdict.value,
            reason=body.reason.value if body.reason else None, retracting=review.retracting)
        return review.as_dict()

    return router
