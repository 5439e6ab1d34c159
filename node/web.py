"""The operator's HTTP interface: ``/metrics``, ``/healthz`` and the jobs API."""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

from prometheus_client import CONTENT_TYPE_LATEST

from .metrics import Metrics
from .states import FailureStage, JobState
from .store import JobStore

__all__ = ["WebServer"]

_logger = logging.getLogger("ainode.web")


class WebServer:
    """Routes:

    - ``GET /metrics``: Prometheus text format.
    - ``GET /healthz``: ``{"status": "ok", ...}`` while every component runs, else 503.
    - ``GET /api/jobs[?state=S&limit=N]``: the newest jobs.
    - ``GET /api/jobs/<id>``: one job with its state history and its results per destination.
    - ``GET /api/series/<uid>``: one series: state history, receive times, its jobs.
    - ``GET /api/quarantine``: instances set aside, with their reasons.
    - ``POST /api/jobs/<id>/retry``: replay a job's dead letters, or run a failed job again.
    - ``POST /api/jobs/<id>/rerun``: run a failed or delivered job again.
    - ``POST /api/deadletters/retry``: queue every dead-lettered result again.
    """

    def __init__(
        self, host: str, port: int, store: JobStore, metrics: Metrics, health: Callable[[], dict[str, Any]]
    ) -> None:
        handler = _make_handler(store, metrics, health)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="web", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _make_handler(store: JobStore, metrics: Metrics, health: Callable[[], dict[str, Any]]) -> type:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            _logger.debug(format % args)

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, payload: Any) -> None:
            self._send(code, json.dumps(payload, default=str).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            self.do_GET_safely()

        def _do_get(self) -> None:
            url = urlparse(self.path)
            parts = [p for p in url.path.split("/") if p]
            query = parse_qs(url.query)
            if parts == ["metrics"]:
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif parts == ["healthz"]:
                status = health()
                self._json(200 if status.get("status") == "ok" else 503, status)
            elif parts == ["api", "jobs"]:
                state = query.get("state", [None])[0]
                limit = query.get("limit", ["200"])[0]
                if state is not None and state not in set(JobState):
                    self._json(400, {"error": f"state must be one of {', '.join(JobState)}"})
                elif not limit.isdigit() or not 1 <= int(limit) <= 10_000:
                    self._json(400, {"error": "limit must be a whole number from 1 to 10000"})
                else:
                    self._json(200, {"jobs": store.list_jobs(JobState(state) if state else None, int(limit))})
            elif parts == ["api", "quarantine"]:
                self._json(200, {"instances": store.quarantined_instances()})
            elif len(parts) == 3 and parts[:2] == ["api", "jobs"] and parts[2].isdigit():
                job = store.get_job(int(parts[2]))
                if job is None:
                    self._json(404, {"error": "no such job"})
                    return
                job["events"] = store.job_events(job["id"])
                job["results"] = [r.__dict__ for r in store.job_results(job["id"])]
                self._json(200, job)
            elif len(parts) == 3 and parts[:2] == ["api", "series"]:
                series = store.get_series(parts[2])
                if series is None:
                    self._json(404, {"error": "no such series"})
                    return
                span = store.series_receive_span(series.series_uid)
                self._json(200, {
                    **series.__dict__,
                    "first_instance_at": span[0] if span else None,
                    "last_instance_at": span[1] if span else None,
                    "events": store.series_events(series.series_uid),
                    "jobs": store.jobs_for_series(series.series_uid),
                })
            else:
                self._json(404, {"error": "not found"})

        def do_GET_safely(self) -> None:
            try:
                self._do_get()
            except Exception as exc:  # a bug or a broken store: answer, and keep serving
                _logger.exception("request failed")
                self._json(500, {"error": type(exc).__name__})

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            try:
                self._do_post()
            except Exception as exc:
                _logger.exception("request failed")
                self._json(500, {"error": type(exc).__name__})

        def _do_post(self) -> None:
            parts = [p for p in urlparse(self.path).path.split("/") if p]
            if parts == ["api", "deadletters", "retry"]:
                self._json(200, {"requeued": store.requeue_dead()})
            elif len(parts) == 4 and parts[:2] == ["api", "jobs"] and parts[2].isdigit() and parts[3] in ("retry", "rerun"):
                self._retry(int(parts[2]), rerun=parts[3] == "rerun")
            else:
                self._json(404, {"error": "not found"})

        def _retry(self, job_id: int, rerun: bool) -> None:
            """``retry``: replay a job's dead letters, or run a failed job again; ``rerun``: run
            a failed or delivered job again (new weights, a fixed pack)."""
            job = store.get_job(job_id)
            if job is None:
                self._json(404, {"error": "no such job"})
                return
            if not rerun and job["state"] == JobState.FAILED and job["stage"] == FailureStage.DELIVER:
                self._json(200, {"job_id": job_id, "action": "dead letters requeued",
                                 "requeued": store.requeue_dead(job_id)})
            elif (rerun or job["state"] == JobState.FAILED) and store.rerun_job(job_id, "re-run requested by an operator"):
                self._json(200, {"job_id": job_id, "action": "queued again", "requeued": 1})
            else:
                self._json(409, {"error": f"job is {job['state']}: nothing to retry", "requeued": 0})

    return Handler
