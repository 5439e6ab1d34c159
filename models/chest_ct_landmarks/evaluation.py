"""Held-out evaluation of the chest CT landmark graph: 1-Up-Down precision and offsets per landmark."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from models.chest_ct_landmarks.datasets import LabelledSeries
from models.chest_ct_landmarks.findings import LANDMARKS
from models.chest_ct_landmarks.metrics import offset_histogram, one_up_down_precision, slice_offsets
from models.chest_ct_landmarks.preprocess import AIRWAY_INPUT, INPUT_NAME, postprocess, stack_context
from models.training import onnx_session

__all__ = ["TEST_SEED_BASE", "EvalReport", "evaluate", "evaluate_series"]

TEST_SEED_BASE = 1_000_000


@dataclass
class EvalReport:
    """Held-out metrics: per landmark the 1-Up-Down precision and the offset histogram."""

    source: str
    n_series: int
    per_landmark: dict[str, dict[str, Any]]
    seconds: float
    seed_range: list[int] = field(default_factory=list)
    offsets: dict[str, list[int]] = field(default_factory=dict)
    series: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The metrics without the per-series detail."""
        out = asdict(self)
        out.pop("offsets")
        out.pop("series")
        return out


def evaluate_series(session: Any, item: LabelledSeries, batch_size: int = 32,
                    carina_window: Sequence[float] | None = None, diaphragm_pick: str = "argmax") -> dict[str, int]:
    """Run an onnxruntime session on one preprocessed series; landmark → picked index."""
    inputs = {INPUT_NAME: stack_context(item.volume, item.offset)}
    if AIRWAY_INPUT in {i.name for i in session.get_inputs()}:
        if item.airway is None:
            raise ValueError(f"{item.name}: the model reads the airway square and the series has none")
        inputs[AIRWAY_INPUT] = stack_context(item.airway, item.offset)
    n = len(inputs[INPUT_NAME])
    parts = [session.run(list(LANDMARKS), {k: v[i:i + batch_size] for k, v in inputs.items()})
             for i in range(0, n, batch_size)]
    outputs = {n: np.concatenate([p[k] for p in parts]) for k, n in enumerate(LANDMARKS)}
    return postprocess(outputs, carina_window=carina_window, diaphragm_pick=diaphragm_pick).picks


def evaluate(
    model_path: Path,
    data: Sequence[LabelledSeries],
    *,
    source: str = "",
    seed_range: list[int] | None = None,
    threads: int = 1,
    carina_window: Sequence[float] | None = None,
    diaphragm_pick: str = "argmax",
) -> EvalReport:
    """1-Up-Down precision and offset histogram per landmark of an ONNX model on ``data``
    (``carina_window``: see :func:`~models.chest_ct_landmarks.preprocess.postprocess`)."""
    t0 = time.perf_counter()
    session = onnx_session(model_path, threads)
    offsets: dict[str, list[int]] = {n: [] for n in LANDMARKS}
    for item in tqdm(data, desc="evaluating", unit="series", leave=False, disable=None):
        picks = evaluate_series(session, item, carina_window=carina_window, diaphragm_pick=diaphragm_pick)
        for n in LANDMARKS:
            offsets[n].append(int(slice_offsets([picks[n]], [item.truth[n]])[0]))
    per = {
        n: {
            "one_up_down_precision": one_up_down_precision(offsets[n]),
            "exact": one_up_down_precision(offsets[n], tolerance=0),
            "within_2": one_up_down_precision(offsets[n], tolerance=2),
            "histogram": offset_histogram(offsets[n]),
            "mean_abs_offset": float(np.mean(np.abs(offsets[n]))) if offsets[n] else float("nan"),
        }
        for n in LANDMARKS
    }
    return EvalReport(source=source, n_series=len(data), per_landmark=per,
                      seconds=round(time.perf_counter() - t0, 1), seed_range=list(seed_range or []),
                      offsets=offsets, series=[d.name for d in data])
