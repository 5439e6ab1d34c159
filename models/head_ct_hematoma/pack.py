"""The head CT hematoma model pack: the node's view of it."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
from pydicom import Dataset

from node.results.aside import EncodedObject
from node.packs.protocol import ResultContext, algorithm_for, read_model_meta

from . import preprocess as _steps
from .findings import HematomaFindings
from .report import stream_results, write_results

__all__ = ["DEMO_WEIGHTS", "HeadCTHematomaPack"]

DEMO_WEIGHTS = Path(__file__).with_name("weights") / "model.onnx"


class HeadCTHematomaPack:
    """HU window 0–80, 16×16 patches classified background / brain / hematoma / bone.

    Parameters
    ----------
    weights:
        An ONNX graph with input ``image`` and output ``logits``; its ``model.json``
        beside it gives version, DeviceUID and the series decision threshold. ``None``
        takes the demo weights trained on phantoms.
    """

    name = "head-ct-hematoma"
    batch_size = 8
    series_number_base = 9000
    tolerates_excluded_slices = True
    """Each slice is classified on its own: a slice that cannot be placed is left out and
    the report counts only the slices that were seen (the job's history lists the rest)."""
    slice_wise = True
    """Preprocessing and the model see one slice at a time (no volume-wide step): the node
    may run them on a series' slices as they arrive (see :mod:`node.worker.slice_cache`)."""

    def __init__(self, weights: Path | None = None) -> None:
        self._weights = Path(weights) if weights else DEMO_WEIGHTS
        meta = read_model_meta(self._weights)
        self.min_patches = int(meta.get("min_patches", 1))
        self.algorithm = algorithm_for("ainode head CT hematoma patches", self._weights, meta)

    def model_path(self) -> Path:
        return self._weights

    def preprocess(self, series: Sequence[Dataset]) -> dict[str, np.ndarray]:
        return _steps.preprocess(series)

    def postprocess(self, series: Sequence[Dataset], outputs: Mapping[str, np.ndarray]) -> HematomaFindings:
        findings = _steps.postprocess(outputs, min_patches=self.min_patches)
        if findings.patch_classes.shape[0] != len(series):
            raise ValueError(f"model returned {findings.patch_classes.shape[0]} slices for {len(series)}")
        return findings

    def write_results(self, series: Sequence[Dataset], findings: HematomaFindings, context: ResultContext) -> list[Dataset]:
        return write_results(series, findings, context)

    def stream_results(
        self, series: Sequence[Dataset], findings: HematomaFindings, context: ResultContext
    ) -> Iterator[Dataset | EncodedObject]:
        """The objects of :meth:`write_results` one by one (SEG, overlays, SR), each as soon as it is built."""
        return stream_results(series, findings, context)
