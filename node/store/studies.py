"""Study-level routes and the route filters of process requests.

``study_routes`` holds one row per study and study-level route: the complete series that
fill the route's requirements so far, then the decision taken once (``fired`` with the
job it queued, or ``incomplete``). A study job is an ordinary row of ``jobs`` whose
``series_uid`` is the first required series; :meth:`StudyQueries.job_series` gives every
series the job reads.

``route_filters`` holds, per series, the routes a process request allowed
(``{"routes": [...]}``): the assembler runs only those on it.
"""
from __future__ import annotations

import json
import time
from typing import Any, Sequence

from ..states import JobState, StudyRouteState
from .dialect import StoreDatabase

__all__ = ["StudyQueries"]


class StudyQueries(StoreDatabase):
    """The ``study_routes`` and ``route_filters`` tables."""

    # -- study-level routes -----------------------------------------------------------
    def note_study_series(self, study_uid: str, route: str, requirements: Sequence[int], series_uid: str) -> bool:
        """Record that the complete series ``series_uid`` fills ``requirements`` of ``route`` in its study.

        The first call for a study and route starts its wait (``waiting``, timed from now).
        Returns False when the route was already decided for the study (it fires once).
        """
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO study_routes(study_uid, route, state, series, first_seen, updated_at)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (study_uid, route, StudyRouteState.WAITING.value, "[]", now, now),
            )
            row = db.execute(f"SELECT id, state, series FROM study_routes WHERE study_uid=? AND route=?"
                             f"{self._dialect.lock_row}", (study_uid, route)).fetchone()
            if StudyRouteState(row["state"]) is not StudyRouteState.WAITING:
                return False
            series = [tuple(p) for p in json.loads(row["series"])]
            added = [(int(r), series_uid) for r in requirements if (int(r), series_uid) not in series]
            if added:
                db.execute("UPDATE study_routes SET series=?, updated_at=? WHERE id=?",
                           (json.dumps(sorted(series + added)), now, row["id"]))
                self._event(db, "study", row["id"], StudyRouteState.WAITING,
                            f"route={route} series={series_uid} fills requires{[r for r, _ in added]}")
        return True

    def waiting_study_routes(self) -> list[dict[str, Any]]:
        """Every study and route still waiting for series, oldest first."""
        rows = self._query("SELECT * FROM study_routes WHERE state=? ORDER BY first_seen",
                           (StudyRouteState.WAITING.value,))
        return [_study_route(r) for r in rows]

    def decide_study_route(
        self, decision_id: int, state: StudyRouteState, detail: str, job: tuple[str, Sequence[str]] | None = None,
    ) -> int | None:
        """Decide a waiting study route: ``fired`` queues one job (``(model, destinations)``)
        on the study's series, ``incomplete`` only records why. Returns the job id."""
        now = time.time()
        with self._tx() as db:
            self._transition(db, "study_routes", "id", decision_id, state)
            row = db.execute("SELECT * FROM study_routes WHERE id=?", (decision_id,)).fetchone()
            job_id = None
            if state is StudyRouteState.FIRED and job is not None:
                series = _series_in_order(json.loads(row["series"]))
                generation = db.execute("SELECT generation FROM series WHERE series_uid=?",
                                        (series[0],)).fetchone()["generation"]
                model, dests = job
                job_id = int(db.execute(
                    "INSERT INTO jobs(series_uid, generation, route, model, destinations, state, created_at,"
                    " updated_at) VALUES (?,?,?,?,?,?,?,?) RETURNING id",
                    (series[0], generation, row["route"], model, json.dumps(list(dests)), JobState.QUEUED.value,
                     now, now),
                ).fetchone()["id"])
                self._event(db, "job", job_id, JobState.QUEUED,
                            f"route={row['route']} model={model} study={row['study_uid']} series={len(series)}")
            db.execute("UPDATE study_routes SET state=?, detail=?, job_id=?, updated_at=? WHERE id=?",
                       (state.value, detail, job_id, now, decision_id))
            self._event(db, "study", decision_id, state, detail)
        return job_id

    def study_route_decisions(self, study_uid: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Study routes, waiting or decided, newest first (of one study when ``study_uid`` is given)."""
        if study_uid is None:
            rows = self._query("SELECT * FROM study_routes ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._query("SELECT * FROM study_routes WHERE study_uid=? ORDER BY id DESC LIMIT ?",
                               (study_uid, limit))
        return [_study_route(r) for r in rows]

    def job_series(self, job_id: int) -> list[str]:
        """The series a job reads: a study job's required series in order, else its one series."""
        rows = self._query("SELECT series FROM study_routes WHERE job_id=?", (job_id,))
        if rows:
            return _series_in_order(json.loads(rows[0]["series"]))
        rows = self._query("SELECT series_uid FROM jobs WHERE id=?", (job_id,))
        return [rows[0]["series_uid"]] if rows else []

    # -- route filters of process requests --------------------------------------------
    def set_route_filter(self, series_uid: str, routes: Sequence[str] | None) -> None:
        """Allow only ``routes`` on ``series_uid`` from now on; ``None`` lifts the filter."""
        with self._tx() as db:
            db.execute("DELETE FROM route_filters WHERE series_uid=?", (series_uid,))
            if routes is not None:
                db.execute("INSERT INTO route_filters(series_uid, routes, updated_at) VALUES (?,?,?)",
                           (series_uid, json.dumps(list(routes)), time.time()))

    def route_filter(self, series_uid: str) -> list[str] | None:
        """The routes a process request allowed on ``series_uid``; ``None``: every route."""
        rows = self._query("SELECT routes FROM route_filters WHERE series_uid=?", (series_uid,))
        return json.loads(rows[0]["routes"]) if rows else None


def _series_in_order(pairs: Sequence[Sequence[Any]]) -> list[str]:
    """The distinct series of ``[[requirement, series_uid], ...]``, by requirement."""
    ordered: list[str] = []
    for _requirement, uid in sorted((int(r), str(u)) for r, u in pairs):
        if uid not in ordered:
            ordered.append(uid)
    return ordered


def _study_route(r: Any) -> dict[str, Any]:
    d = dict(r)
    pairs = json.loads(d["series"])
    d["series"] = _series_in_order(pairs)
    d["requirements_met"] = sorted({int(p[0]) for p in pairs})
    d["state"] = StudyRouteState(d["state"])
    return d
