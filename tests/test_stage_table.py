"""The stage table wires the pipeline: every transition belongs to exactly one row, and producing
a state wakes the stage that consumes it."""
from __future__ import annotations

from enum import StrEnum

from node.pipeline.stages import STAGE_TABLE, Pipeline
from node.states import TRANSITIONS, InstanceState, JobState, ResultState, SeriesState, Stage


def _key(old: StrEnum, new: StrEnum) -> tuple[str, str, str]:
    """A transition with its kind: states of different kinds may share a value ("received")."""
    assert type(old) is type(new), (old, new)
    return type(new).__name__, old.value, new.value


def _all_transitions() -> set[tuple[str, str, str]]:
    return {_key(old, new) for table in TRANSITIONS.values() for old, news in table.items() for new in news}


def test_every_transition_belongs_to_exactly_one_row() -> None:
    for transition in _all_transitions():
        owners = [row.stage for row in STAGE_TABLE if transition in {_key(*move) for move in row.moves}]
        assert len(owners) == 1, (transition, owners)


def test_rows_make_only_transitions_the_states_allow_into_states_they_produce() -> None:
    allowed = _all_transitions()
    for row in STAGE_TABLE:
        moves = {_key(*move) for move in row.moves}
        assert moves <= allowed, (row.stage, moves - allowed)
        produced = {(type(state).__name__, state.value) for state in row.produces}
        assert {(kind, new) for kind, _old, new in moves} <= produced, row.stage


def test_every_stage_is_named_once_in_the_one_vocabulary() -> None:
    stages = [row.stage for row in STAGE_TABLE]
    assert len(stages) == len(set(stages))
    assert all(isinstance(stage, Stage) for stage in stages)


class _Recorder:
    def __init__(self, name: str, log: list) -> None:
        self.name, self.log = name, log

    def start(self) -> None:
        self.log.append(("start", self.name))

    def stop(self) -> None:
        self.log.append(("stop", self.name))

    def wake(self, state: StrEnum | None = None) -> None:
        self.log.append((self.name, state))


def test_producing_a_state_wakes_the_stages_that_consume_it() -> None:
    log: list = []
    pipeline = Pipeline()
    assembler = _Recorder("assembler", log)
    for stage, component in ((Stage.INDEX, _Recorder("indexer", log)), (Stage.ASSEMBLE, assembler),
                             (Stage.ROUTE, assembler), (Stage.RUN, _Recorder("runner", log)),
                             (Stage.DELIVER, _Recorder("outbox", log))):
        pipeline.attach(stage, component)
    pipeline.produced(InstanceState.RECEIVED)
    pipeline.produced(SeriesState.RECEIVED)
    pipeline.produced(SeriesState.COMPLETE)
    pipeline.produced(JobState.QUEUED)
    pipeline.produced(ResultState.PENDING)
    pipeline.produced(JobState.DELIVERED)  # nobody here consumes it
    assert log == [("indexer", InstanceState.RECEIVED),
                   ("assembler", SeriesState.RECEIVED), ("runner", SeriesState.RECEIVED),
                   ("assembler", SeriesState.COMPLETE),
                   ("runner", JobState.QUEUED),
                   ("outbox", ResultState.PENDING)]
    log.clear()
    pipeline.start()
    pipeline.stop()
    assert log == [("start", "outbox"), ("start", "runner"), ("start", "assembler"), ("start", "indexer"),
                   ("stop", "indexer"), ("stop", "assembler"), ("stop", "runner"), ("stop", "outbox")]


def test_a_job_yielding_to_stat_work_is_a_move_of_the_run_stage_alone() -> None:
    """Preemption (issue 32): running → queued, made by the runner (a yield, or a lost lease), by no other row."""
    owners = [row.stage for row in STAGE_TABLE if (JobState.RUNNING, JobState.QUEUED) in row.moves]
    assert owners == [Stage.RUN]
    assert JobState.QUEUED in next(row for row in STAGE_TABLE if row.stage is Stage.RUN).produces
