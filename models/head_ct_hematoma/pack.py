"""The head CT hematoma model pack: the node's view of it."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from pydicom import Dataset

from node.dicom.attributes import VOLUME
from node.packs.base import PackBase

from . import preprocess as _steps
from .findings import HematomaFindings, SeriesCount
from .report import stream_results, write_results

__all__ = ["HeadCTHematomaPack"]


class HeadCTHematomaPack(PackBase):
    """HU window 0–80, 16×16 patches classified background / brain / hematoma / bone.

    Parameters
    ----------
    weights:
        An ONNX graph with input ``image`` and output ``logits``; its ``model.json``
        beside it gives version, DeviceUID and the series decision threshold. ``None``
        takes the demo weights trained on phantoms.
    """

    name = "head-ct-hematoma"
    required_attributes = VOLUME
    """Checked on every image at load (a CT volume: matrix, rescale to HU, Pixel Spacing and plane geometry for the SEG and the SR)."""
    batch_size = 8
    algorithm_name = "ainode head CT hematoma patches"
    series_number_base = 9000
    tolerates_excluded_slices = True
    """Each slice is classified on its own: a slice that cannot be placed is left out and
    the report counts only the slices that were seen (the job's history lists the rest)."""
    slice_wise = True
    """Preprocessing and the model see one slice at a time (no volume-wide step): the node
    may run them on a series' slices as they arrive (see :mod:`node.worker.slice_cache`)."""

    def configure(self, meta: Mapping[str, Any]) -> None:
        self.min_patches = int(meta.get("min_patches", 1))
        self.min_probability = float(meta.get("min_probability", 0.0))
        self.series_count = SeriesCount(meta.get("series_count", SeriesCount.TOTAL.value))

    def preprocess(self, series: Sequence[Dataset]) -> dict[str, np.ndarray]:
        return _steps.preprocess(series)

    def postprocess(self, series: Sequence[Dataset], outputs: Mapping[str, np.ndarray]) -> HematomaFindings:
        findings = _steps.postprocess(outputs, min_patches=self.min_patches, min_probability=self.min_probability,
                                       series_count=self.series_count)
        if findings.patch_classes.shape[0] != len(series):
            raise ValueError(f"model returned {findings.patch_classes.shape[0]} slices for {len(series)}")
        return findings

    write_results = staticmethod(write_results)
    """The result objects of a series' findings: :func:`.report.write_results`."""

    stream_results = staticmethod(stream_results)
    """The objects of :meth:`write_results` one by one (SEG, overlays, SR), each as soon as
    it is built (:func:`.report.stream_results`)."""
