"""A job's applicability, and what its route's ``on_out_of_domain`` makes of the results.

:func:`judge` scores what ``preprocess`` returned (see :mod:`node.packs.applicability`).
:func:`writer_for` gives :func:`node.worker.saving.save_results` the pack itself
(``ignore``, or an input in the domain), a writer of the "not evaluated" report alone
(``withhold``), or the pack with every object marked and the report added (``flag``).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from pydicom import Dataset

from ..packs.applicability import Verdict
from ..packs.protocol import ModelPack, ResultContext
from ..results.applicability import STATEMENT_SERIES_OFFSET, build_applicability_report, flag_object

__all__ = ["FLAG", "IGNORE", "WITHHOLD", "action_for", "judge", "summary_of", "writer_for"]

WITHHOLD, FLAG, IGNORE = "withhold", "flag", "ignore"
"""The values of :class:`node.config.choices.OnOutOfDomain` (plain strings across the process boundary)."""


def judge(pack: ModelPack, series: Sequence[Dataset], missing: Sequence[Dataset],
          inputs: Mapping[str, np.ndarray] | None, known: Mapping[int, np.ndarray]) -> Verdict | None:
    """The verdict on the job's input; ``None`` when the pack's weights carry no applicability block.

    ``inputs`` is what ``preprocess`` returned for the images ``missing`` from the read-ahead;
    ``known`` holds the descriptors of the images read ahead, by ``id``. When they do not cover
    ``series`` image for image, every image is preprocessed again and described here.
    """
    check = pack.applicability
    if check is None:
        return None
    if not known and inputs is not None and len(missing) == len(series):
        return check.verdict(inputs)  # nothing read ahead: the whole input, however the pack lays it out
    rows = dict(known)
    if missing and inputs is not None:
        described = check.describe(inputs)
        if len(described) == len(missing):
            rows.update(zip(map(id, missing), described))
    if all(id(image) in rows for image in series):
        return check.verdict_of(np.array([rows[id(image)] for image in series]))
    return check.verdict(pack.preprocess(list(series)))


def action_for(verdict: Verdict | None, on_out_of_domain: str) -> str | None:
    """What happens to the job: ``None`` (in the domain, or not scored), else the route's action."""
    if verdict is None or not verdict.out_of_domain:
        return None
    return on_out_of_domain


class _Statement:
    """Writes only the report that the image was not evaluated (``withhold``)."""

    stream_results = None

    def __init__(self, pack: ModelPack, verdict: Verdict) -> None:
        self._pack, self._verdict = pack, verdict

    def write_results(self, series: Sequence[Dataset], findings: Any, context: ResultContext) -> list[Dataset]:
        return [_report(series, context, self._pack, self._verdict, withheld=True)]


class _Flagged:
    """Writes the pack's objects, each marked, and the report that they are unvalidated (``flag``)."""

    stream_results = None

    def __init__(self, pack: ModelPack, verdict: Verdict) -> None:
        self._pack, self._verdict = pack, verdict

    def write_results(self, series: Sequence[Dataset], findings: Any, context: ResultContext) -> list[Dataset]:
        sentence = f"the image is outside what the model was validated on ({self._verdict.sentence()})"
        objects = [flag_object(ds, sentence) for ds in self._pack.write_results(series, findings, context)]
        return [*objects, _report(series, context, self._pack, self._verdict, withheld=False)]


def _report(series: Sequence[Dataset], context: ResultContext, pack: ModelPack, verdict: Verdict,
            *, withheld: bool) -> Dataset:
    return build_applicability_report(series, context.algorithm, pack.series_number_base + STATEMENT_SERIES_OFFSET,
                                      verdict.score, verdict.threshold, withheld=withheld)


def writer_for(pack: ModelPack, verdict: Verdict | None, action: str | None) -> Any:
    """What writes the job's results: the pack, :class:`_Statement` or :class:`_Flagged`."""
    if verdict is None or action in (None, IGNORE):
        return pack
    return _Statement(pack, verdict) if action == WITHHOLD else _Flagged(pack, verdict)


def summary_of(verdict: Verdict | None, action: str | None) -> dict[str, Any]:
    """The job summary's ``applicability`` entry (empty when the pack is not calibrated)."""
    if verdict is None:
        return {}
    return {"applicability": {"score": round(verdict.score, 4), "threshold": verdict.threshold,
                              "out_of_domain": verdict.out_of_domain, "action": action or "none"}}
