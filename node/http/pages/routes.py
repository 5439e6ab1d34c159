"""The pages: ``/`` (status) and ``/jobs/{id}`` (results), and the PNG/STL they load.

Served by the node's FastAPI application, so every page and image goes through the same
auth dependency as the JSON API (:mod:`node.http.auth`): where the API needs a token, so do
the pages; patient images are never shown to a request the API would refuse. URLs carry
job ids and slice indexes only, never a UID.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ...redact import scrub
from ...states import JobState
from ...store import JobStore
from ...store.reviews import RejectReason
from . import render
from .status import snapshot, timeline
from .view import JobView, job_view

__all__ = ["STATIC_DIR", "static_files", "ui_router"]

_HERE = Path(__file__).parent
STATIC_DIR = _HERE / "static"
_PNG_HEADERS = {"Cache-Control": "private, max-age=60"}


def static_files() -> StaticFiles:
    """The pages' CSS and JavaScript (no patient data: mounted at ``/ui/static``)."""
    return StaticFiles(directory=STATIC_DIR)


def ui_router(store: JobStore, health: Callable[[], dict[str, Any]], models: Sequence[str] = ()) -> APIRouter:
    """The status and results pages for ``store``; ``models``: the routed models (for their engines)."""
    templates = Jinja2Templates(directory=_HERE / "templates")
    templates.env.filters.update(seconds=_seconds, size=_size, short=_short, clock=_clock)
    router = APIRouter(include_in_schema=False)

    def _status(request: Request, name: str) -> HTMLResponse:
        snap = snapshot(store, health, models, request.app.version)
        return templates.TemplateResponse(request, name, {"s": snap})

    @router.get("/", response_class=HTMLResponse)
    def status_page(request: Request) -> HTMLResponse:
        return _status(request, "status.html")

    @router.get("/ui/status-body", response_class=HTMLResponse)
    def status_body(request: Request) -> HTMLResponse:
        return _status(request, "status_body.html")

    @router.get("/jobs/{job_id}", response_class=HTMLResponse)
    def job_page(request: Request, job_id: int) -> HTMLResponse:
        view = _view(job_id)
        row = store.get_job(job_id)
        job = {**row.as_dict(), "reason": scrub(row.reason)} if row is not None else {}
        return templates.TemplateResponse(request, "job.html", {
            "job": job, "view": view, "start": view.start_slice(), "version": request.app.version,
            "timeline": timeline(store.job_events(job_id), job.get("created_at", 0.0)),
            "layers": {name: view.layer_slices(name) for name in view.layers},
            "reviews": store.job_reviews(job_id), "reasons": [r.value for r in RejectReason],
            "reviewable": row is not None and row.state not in (JobState.QUEUED, JobState.RUNNING),
        })

    @router.get("/jobs/{job_id}/slices/{index}.png")
    def slice_image(job_id: int, index: int) -> Response:
        view = _view(job_id)
        return Response(render.slice_png(view.slices[_index(view, index)]), media_type="image/png", headers=_PNG_HEADERS)

    @router.get("/jobs/{job_id}/layers/{layer}/{index}.png")
    def layer_image(job_id: int, layer: Literal["seg", "heatmap"], index: int) -> Response:
        view = _view(job_id)
        index = _index(view, index)
        found = view.layers.get(layer)
        if found is None or index not in found.path_by_slice:
            data = render.blank_png(view.shapes[index])
        elif found.kind == "seg":
            data = render.mask_png(found.path_by_slice[index], found.frames_by_slice[index], view.shapes[index])
        else:
            data = render.sc_png(found.path_by_slice[index])
        return Response(data, media_type="image/png", headers=_PNG_HEADERS)

    @router.get("/jobs/{job_id}/surface.stl")
    def surface(job_id: int) -> Response:
        view = _view(job_id)
        if view.surface is None:
            raise HTTPException(404, "this job wrote no surface")
        return Response(render.stl_bytes(view.surface), media_type="model/stl")

    def _view(job_id: int) -> JobView:
        view = job_view(store, job_id)
        if view is None:
            raise HTTPException(404, "no such job")
        return view

    return router


def _index(view: JobView, index: int) -> int:
    if not 0 <= index < len(view.slices):
        raise HTTPException(404, "no such slice (the sources may have been purged)")
    return index


def _seconds(value: float | None) -> str:
    if not isinstance(value, (int, float)):
        return "…"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def _size(value: float | None) -> str:
    if not isinstance(value, (int, float)):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(value)


def _clock(value: float) -> str:
    """A time of day on the node's clock (UTC)."""
    return time.strftime("%H:%M:%S UTC", time.gmtime(value))


def _short(uid: str | None) -> str:
    """The tail of a UID: enough to tell series apart on one screen."""
    return "" if not uid else ("…" + uid[-10:] if len(uid) > 12 else uid)
