"""The operator's HTTP interface: ``/metrics``, ``/healthz`` and the jobs API, on FastAPI.

FastAPI (on Starlette, served by uvicorn) gives typed request and response models, input
validation that answers 422 instead of crashing a handler, and an OpenAPI description at
``/openapi.json`` (browsable at ``/docs``). Handlers are plain functions: the job store is
synchronous, so they run in the framework's thread pool.

Every path but the open ones (``/metrics``, ``/healthz``) goes through :class:`~node.http.auth.BearerAuth`,
an application-wide dependency (see :mod:`node.http.auth` for the policy). Free-text reasons
(failures, events, quarantine) are scrubbed of attribute values (:func:`node.redact.scrub`)
before they leave, so no answer carries patient data. A series' routing attributes are
shown coded only (:data:`CODED_ATTRIBUTES`: Modality, Body Part Examined, SOP Class, sizes,
...); free text (Study and Series Description, Protocol Name, Manufacturer) may hold
anything a technologist typed, a patient's name included, and is withheld unless
``[http] show_free_text = true``. Every state-changing request is refused with 403 when a
browser says another site started it (:class:`~node.http.auth.CrossSiteGuard`).
"""
from __future__ import annotations

import asyncio
import io
import logging
import socket
import ssl
import threading
from typing import Any, Callable, Literal, Mapping, Sequence

import pydicom
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from .auth import AccessMode, BearerAuth, CrossSiteGuard
from ..config import DestinationConfig, HttpConfig
from ..ingest import InstanceAcceptor
from ..metrics import Metrics
from ..dicom.tls import CIPHERS
from ..ingest.retrieve import RetrieveError, process_study
from ..states import FailureStage, JobState
from ..store import JobStore
from .stow import REFERENCED_STUDY_MISMATCH, StoredInstance, StowRequestError, dicom_parts, stow_response
from ..dicom.uids import is_valid_uid
from .pages import login_router, static_files, ui_router
from .review import review_router
from .schemas import JobDetail, JobList, ProcessOut, ProcessRequest, QuarantineList, RetryOut, SeriesDetail

__all__ = ["CODED_ATTRIBUTES", "WebServer", "create_app", "shown_attributes"]

_logger = logging.getLogger("ainode.web")


CODED_ATTRIBUTES = frozenset({
    "Modality", "BodyPartExamined", "SOPClassUID", "ImageType", "SliceThickness", "Rows", "Columns",
    "ImagesInAcquisition", "NumberOfFrames", "PhotometricInterpretation",
    "RequestedProcedurePriority", "StudyPriorityID",  # CS: STAT, HIGH, ROUTINE, MEDIUM, LOW (issue 32)
})
"""Routing attributes the API shows by default: coded values and numbers (CS, UI, IS, DS, US).
Any other (the free text of Study/Series Description, Protocol Name, Manufacturer, and any
attribute added to the routing keywords later) is withheld unless ``show_free_text``."""


def shown_attributes(attrs: Mapping[str, Any], show_free_text: bool) -> tuple[dict[str, Any], list[str]]:
    """The routing attributes an answer may carry, and the keywords of those withheld (sorted)."""
    if show_free_text:
        return dict(attrs), []
    return ({k: v for k, v in attrs.items() if k in CODED_ATTRIBUTES},
            sorted(k for k in attrs if k not in CODED_ATTRIBUTES))


def create_app(
    store: JobStore, metrics: Metrics, health: Callable[[], dict[str, Any]],
    acceptor: InstanceAcceptor | None = None, sources: Sequence[DestinationConfig] = (),
    auth: BearerAuth | None = None, route_names: Sequence[str] = (), models: Sequence[str] = (),
    show_free_text: bool = False,
) -> FastAPI:
    """The node's HTTP application; with an ``acceptor``, also STOW-RS and processing on request.

    ``route_names``: the configured routes a process request may restrict itself to.

    ``auth``: who may call what (default: anonymous, for a loopback-only API).

    ``models``: the routed models, whose engines the status page (``/``) shows.

    ``show_free_text``: show free-text routing attributes (``[http] show_free_text``).
    """
    auth = auth or BearerAuth(AccessMode.ANONYMOUS)
    app = FastAPI(title="ainode", summary="AI inference node beside a PACS: operator API and STOW-RS",
                  version=_version(), dependencies=[Depends(auth)])
    app.add_middleware(CrossSiteGuard)  # before routing: every state-changing endpoint, whatever the auth
    if acceptor is not None:
        _add_stow(app, acceptor)
        _add_process(app, acceptor, store, {s.name: s for s in sources}, route_names)

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics")
    def get_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", summary="200 while every stage runs; disk figures and whether ingest accepts")
    def get_health() -> JSONResponse:
        status = health()
        return JSONResponse(status, status_code=200 if status.get("status") == "ok" else 503)

    @app.get("/api/jobs", response_model=JobList, summary="The newest jobs")
    def list_jobs(state: JobState | None = None, limit: int = Query(200, ge=1, le=10_000)) -> dict[str, Any]:
        return {"jobs": [job.as_dict() for job in store.list_jobs(state, limit)]}

    @app.get("/api/jobs/{job_id}", response_model=JobDetail, summary="One job, its history and its results")
    def get_job(job_id: int) -> dict[str, Any]:
        job = store.get_job(job_id)
        if job is None:
            raise HTTPException(404, "no such job")
        return {**job.as_dict(), "events": store.job_events(job_id),
                "results": [r.__dict__ for r in store.job_results(job_id)],
                "reviews": [r.as_dict() for r in store.job_reviews(job_id)]}

    app.include_router(review_router(store, metrics))  # before /api/jobs/{id}/{action}, which would take "review"

    @app.get("/api/series/{series_uid}", response_model=SeriesDetail, summary="One series, its history and jobs")
    def get_series(series_uid: str) -> dict[str, Any]:
        series = store.get_series(series_uid)
        if series is None:
            raise HTTPException(404, "no such series")
        span = store.series_receive_span(series_uid)
        attrs, withheld = shown_attributes(series.attrs or {}, show_free_text)
        return {
            **series.__dict__,
            "attrs": attrs,
            "withheld_attrs": withheld,
            "first_instance_at": span[0] if span else None,
            "last_instance_at": span[1] if span else None,
            "events": store.series_events(series_uid),
            "jobs": [job.as_dict() for job in store.jobs_for_series(series_uid)],
        }

    @app.get("/api/study-routes", summary="Study-level routes: waiting, fired (with their job) or incomplete")
    def list_study_routes(study_uid: str | None = None, limit: int = Query(200, ge=1, le=10_000)) -> dict[str, Any]:
        return {"study_routes": store.study_route_decisions(study_uid, limit)}

    @app.get("/api/quarantine", response_model=QuarantineList, summary="Instances set aside, with their reasons")
    def list_quarantine(limit: int = Query(200, ge=1, le=10_000)) -> dict[str, Any]:
        return {"instances": store.quarantined_instances(limit)}

    @app.post("/api/jobs/{job_id}/{action}", response_model=RetryOut,
              summary="retry: replay a job's dead letters or run a failed job again; rerun: run it again")
    def retry_job(job_id: int, action: Literal["retry", "rerun"]) -> dict[str, Any]:
        job = store.get_job(job_id)
        if job is None:
            raise HTTPException(404, "no such job")
        if action == "retry" and job.state == JobState.FAILED and job.stage == FailureStage.DELIVER:
            return {"job_id": job_id, "action": "dead letters requeued", "requeued": store.requeue_dead(job_id)}
        if (action == "rerun" or job.state == JobState.FAILED) and store.rerun_job(
                job_id, "re-run requested by an operator"):
            return {"job_id": job_id, "action": "queued again", "requeued": 1}
        raise HTTPException(409, f"job is {job.state}: nothing to {action}")

    @app.post("/api/deadletters/retry", response_model=RetryOut, summary="Replay every dead letter")
    def retry_dead_letters() -> dict[str, Any]:
        return {"action": "dead letters requeued", "requeued": store.requeue_dead()}

    app.include_router(ui_router(store, health, models))  # the pages: /, /jobs/{id} (same auth)
    app.include_router(login_router(auth, app.version))  # /login, /logout: a session cookie for browsers
    app.mount("/ui/static", static_files(), name="ui-static")
    return app


def _add_stow(app: FastAPI, acceptor: InstanceAcceptor) -> None:
    """``POST /dicom-web/studies[/{study}]``: STOW-RS through the same acceptor as C-STORE."""

    async def store_instances(request: Request, study: str | None) -> JSONResponse:
        if getattr(request.app.state, "intake_closed", False):  # the node is stopping (node.service.Node.stop)
            return JSONResponse({"error": "the node is stopping; send again later"}, status_code=503,
                                headers={"Retry-After": "30"})
        body = await request.body()
        try:
            parts = list(dicom_parts(request.headers.get("content-type", ""), body))
        except StowRequestError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        source = f"STOW-RS {request.client.host if request.client else '?'}"
        outcomes = await run_in_threadpool(_accept_parts, acceptor, parts, source, study)
        status, answer = stow_response(outcomes)
        return JSONResponse(answer, status_code=status, media_type="application/dicom+json")

    @app.post("/dicom-web/studies", summary="STOW-RS: store instances (multipart/related; application/dicom)")
    async def stow(request: Request) -> JSONResponse:
        return await store_instances(request, None)

    @app.post("/dicom-web/studies/{study}", summary="STOW-RS: store instances of one study")
    async def stow_study(request: Request, study: str) -> JSONResponse:
        return await store_instances(request, study)


def _add_process(
    app: FastAPI, acceptor: InstanceAcceptor, store: JobStore, sources: Mapping[str, DestinationConfig],
    route_names: Sequence[str] = (),
) -> None:
    @app.post("/api/studies/{study_uid}/process", response_model=ProcessOut,
              summary="Retrieve a study from a source archive and run the matching routes on it")
    def process(study_uid: str, request: ProcessRequest) -> dict[str, Any]:
        if not is_valid_uid(study_uid):
            raise HTTPException(422, "not a Study Instance UID")
        source = sources.get(request.source)
        if source is None:
            raise HTTPException(404, f"no source named {request.source!r} (known: {', '.join(sources) or 'none'})")
        unknown = [r for r in request.routes or () if route_names and r not in route_names]
        if unknown:
            raise HTTPException(404, f"no route named {', '.join(map(repr, unknown))} (known: {', '.join(route_names)})")
        try:
            report = process_study(source, study_uid, acceptor, store, routes=request.routes)
        except RetrieveError as exc:
            raise HTTPException(502, str(exc)) from exc
        return report.__dict__


def _accept_parts(acceptor: InstanceAcceptor, parts: list[bytes], source: str, study: str | None) -> list[StoredInstance]:
    """Accept each part; the request's end releases its series, as an A-RELEASE does."""
    outcomes = []
    transfer = acceptor.open_transfer()
    try:
        for data in parts:
            claimed = _claimed(data)
            if study is not None and claimed.get("StudyInstanceUID") not in (None, study):
                outcomes.append(StoredInstance(claimed.get("SOPClassUID", ""), claimed.get("SOPInstanceUID", ""),
                                               REFERENCED_STUDY_MISMATCH))
                continue
            receipt = acceptor.accept_part10(data, source, transfer=transfer)
            header = receipt.header
            outcomes.append(StoredInstance(
                header.sop_class_uid if header else claimed.get("SOPClassUID", ""),
                header.sop_instance_uid if header else claimed.get("SOPInstanceUID", ""),
                None if receipt.accepted else receipt.status,
            ))
    finally:
        acceptor.close_transfer(transfer, released=len(outcomes) == len(parts))
    return outcomes


def _claimed(data: bytes) -> dict[str, str]:
    """The UIDs a part says it has, read leniently (the acceptor does the real check)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True,
                             specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"])
        return {k: str(ds[k].value) for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID") if k in ds}
    except Exception:
        return {}


class WebServer:
    """The application served by uvicorn in a background thread (port 0 picks a free port)."""

    def __init__(
        self, host: str, port: int, store: JobStore, metrics: Metrics, health: Callable[[], dict[str, Any]],
        acceptor: InstanceAcceptor | None = None, sources: Sequence[DestinationConfig] = (),
        auth: BearerAuth | None = None, http: HttpConfig | None = None, route_names: Sequence[str] = (),
        models: Sequence[str] = (),
    ) -> None:
        self.app = create_app(store, metrics, health, acceptor, sources, auth, route_names, models,
                              show_free_text=http is not None and http.show_free_text)
        self._socket = socket.create_server((host, port), reuse_port=False)
        https = {} if http is None or http.cert is None else {"ssl_certfile": str(http.cert),
                                                              "ssl_keyfile": str(http.key)}
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off", **https)
        if https:
            config.load()
            assert config.ssl is not None
            config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
            config.ssl.set_ciphers(CIPHERS)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="web", daemon=True)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))

    def start(self) -> None:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(100):
            if self._server.started or not self._thread.is_alive():
                break
            deadline.wait(0.05)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._socket.close()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ainode")
    except PackageNotFoundError:
        return "0.0.0"
