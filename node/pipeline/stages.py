"""The stage table: what each stage of the pipeline consumes and produces, and who runs it.

One row per stage, as pynetdicom's transition table drives its state machine. From the
rows the node's :class:`Pipeline` is made: it starts the stages from the last to the first
(nothing arrives before it can be handled), stops them in pipeline order, and, when a
stage produces a state, wakes the stages that consume it (:meth:`Pipeline.produced`).
Every transition of :data:`node.states.TRANSITIONS` is made by exactly one row
(``moves``; ``tests/test_stage_table.py`` holds the table to it).

========  ===========================  ==========================================
stage     consumes                     produces
========  ===========================  ==========================================
ingest    (C-STORE, STOW-RS, C-GET)    instance received, series received
index     instance received            instance indexed / quarantined, series
                                       received (new, reopened or re-sent), jobs
                                       superseded (their series reopened)
assemble  series received              series complete
route     series complete              series routed / ignored, job queued
run       job queued (and series       job running → written / failed, or queued
          received: read-ahead)        again (yielded to a stat job), result
                                       pending (superseded when its job re-runs)
deliver   result pending (and job      result delivered / dead / retracted, job
          superseded: its delivered    delivered / failed; retractions queued
          results are retracted)       (rejected or superseded jobs)
retain    series routed / ignored      series purged
operate   job failed / delivered,      job queued / written, result pending
          result dead                  (re-run, replayed by an operator)
========  ===========================  ==========================================
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Iterable, Protocol

from ..logs import log
from ..states import (
    InstanceState as I,  # noqa: N817 - short names for the table
    JobState as J,  # noqa: N817
    ResultState as R,  # noqa: N817
    SeriesState as S,  # noqa: N817
    Stage,
    StudyRouteState as T,  # noqa: N817
)

__all__ = ["STAGE_TABLE", "Component", "Pipeline", "StageRow"]

_logger = logging.getLogger("ainode.pipeline")


@dataclass(frozen=True)
class StageRow:
    """One stage: the states it takes work in, the states it leaves work in, the transitions it makes."""

    stage: Stage
    consumes: tuple[StrEnum, ...]
    """Work arriving in these states wakes the stage."""
    produces: tuple[StrEnum, ...]
    moves: frozenset[tuple[StrEnum, StrEnum]]
    """The transitions of :data:`node.states.TRANSITIONS` this stage makes (and no other)."""


_SUPERSEDABLE = (J.QUEUED, J.RUNNING, J.WRITTEN, J.DELIVERED, J.FAILED)

STAGE_TABLE: tuple[StageRow, ...] = (
    StageRow(Stage.INGEST, (), (I.RECEIVED, S.RECEIVED),
             frozenset({(I.INDEXED, I.RECEIVED), (I.QUARANTINED, I.RECEIVED)})),
    StageRow(Stage.INDEX, (I.RECEIVED,), (I.INDEXED, I.QUARANTINED, S.RECEIVED, J.SUPERSEDED),
             frozenset({(I.RECEIVED, I.INDEXED), (I.RECEIVED, I.QUARANTINED), (S.ROUTED, S.RECEIVED),
                        (S.PURGED, S.RECEIVED), *((j, J.SUPERSEDED) for j in _SUPERSEDABLE)})),
    StageRow(Stage.ASSEMBLE, (S.RECEIVED,), (S.COMPLETE,), frozenset({(S.RECEIVED, S.COMPLETE)})),
    StageRow(Stage.ROUTE, (S.COMPLETE,), (S.ROUTED, S.IGNORED, J.QUEUED, T.FIRED, T.INCOMPLETE),
             frozenset({(S.COMPLETE, S.ROUTED), (S.COMPLETE, S.IGNORED), (T.WAITING, T.FIRED),
                        (T.WAITING, T.INCOMPLETE)})),
    StageRow(Stage.RUN, (J.QUEUED, S.RECEIVED), (J.RUNNING, J.WRITTEN, J.FAILED, J.QUEUED, R.PENDING, R.SUPERSEDED),
             frozenset({(J.QUEUED, J.RUNNING), (J.QUEUED, J.FAILED), (J.RUNNING, J.WRITTEN), (J.RUNNING, J.FAILED),
                        (J.RUNNING, J.QUEUED), (R.PENDING, R.SUPERSEDED), (R.DEAD, R.SUPERSEDED)})),
    StageRow(Stage.DELIVER, (R.PENDING, J.SUPERSEDED),
             (R.DELIVERED, R.DEAD, R.PENDING, R.RETRACTED, J.DELIVERED, J.FAILED),
             frozenset({(R.PENDING, R.DELIVERED), (R.PENDING, R.DEAD), (R.PENDING, R.PENDING),
                        (R.DELIVERED, R.RETRACTED), (J.WRITTEN, J.DELIVERED), (J.WRITTEN, J.FAILED)})),
    StageRow(Stage.RETAIN, (S.ROUTED, S.IGNORED), (S.PURGED,),
             frozenset({(S.ROUTED, S.PURGED), (S.IGNORED, S.PURGED)})),
    StageRow(Stage.OPERATE, (J.FAILED, J.DELIVERED, R.DEAD), (J.QUEUED, J.WRITTEN, R.PENDING),
             frozenset({(J.FAILED, J.QUEUED), (J.DELIVERED, J.QUEUED), (J.FAILED, J.WRITTEN), (R.DEAD, R.PENDING)})),
)
"""The whole pipeline, in order."""


class Component(Protocol):
    """What runs a stage: started, stopped, and woken with the state that was produced."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def wake(self, state: StrEnum | None = None) -> None: ...


class Pipeline:
    """The stages this process runs, wired by :data:`STAGE_TABLE`.

    Components are made with the pipeline as their :class:`~node.states.Wakeups`, then
    attached to the stages they run (:meth:`attach`). A stage nobody attached runs
    elsewhere (another process sharing the store) or not at all; its row stays in the
    table. One component may run several stages (the assembler assembles and routes); it
    is started and stopped once. :meth:`released` goes to the component of ``assemble``
    (completion when the sender is done).
    """

    def __init__(self) -> None:
        self._components: dict[Stage, Component] = {}

    def attach(self, stage: Stage, component: Component | None) -> None:
        """``component`` runs ``stage`` in this process (``None``: nobody here does)."""
        if component is not None:
            self._components[stage] = component

    def rows(self) -> tuple[StageRow, ...]:
        """The rows of the stages this process runs, in pipeline order."""
        return tuple(row for row in STAGE_TABLE if row.stage in self._components)

    def component(self, stage: Stage) -> Component | None:
        """Who runs ``stage`` here, if anyone."""
        return self._components.get(stage)

    def produced(self, *states: StrEnum) -> None:
        """Work reached ``states``: wake each stage of this process that consumes one of them."""
        for state in states:
            woken: list[Component] = []
            for row in self.rows():
                component = self._components[row.stage]
                # `is`: states of different kinds may share a value (instance and series 'received')
                if any(state is consumed for consumed in row.consumes) and all(component is not c for c in woken):
                    woken.append(component)
                    try:
                        component.wake(state)
                    except Exception as exc:  # a wake-up never fails its producer
                        log(_logger, logging.WARNING, "wake-up failed", state=state.value, reason=repr(exc))

    def released(self, series_uids: Iterable[str]) -> None:
        """A sender released the series it sent: the assembler may complete them now."""
        assembler = self._components.get(Stage.ASSEMBLE)
        if assembler is not None:
            assembler.released(series_uids)  # type: ignore[attr-defined]

    def start(self) -> None:
        """Start the stages from the last to the first."""
        for component in reversed(self._distinct()):
            component.start()

    def stop(self) -> None:
        """Stop the stages in pipeline order."""
        for component in self._distinct():
            component.stop()

    def _distinct(self) -> list[Component]:
        seen: list[Component] = []
        for row in self.rows():
            component = self._components[row.stage]
            if all(component is not other for other in seen):
                seen.append(component)
        return seen
