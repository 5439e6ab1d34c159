"""The brain MR structures/tumour model pack: the node's view of it."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from pydicom import Dataset

from node.packs.base import PackBase

from . import preprocess as _steps
from .findings import BrainMRFindings
from .report import write_results

__all__ = ["BrainMRPack"]


class BrainMRPack(PackBase):
    """2D/2.5D U-Net (with a full-resolution residual stream) segmenting brain structures and tumour.

    Every image is checked at load against the default ``required_attributes``, an MR
    volume: volumes are measured in mm from Pixel Spacing and slice positions.

    Parameters
    ----------
    weights:
        An ONNX graph with input ``image`` and output ``logits``; its ``model.json``
        beside it gives version, DeviceUID, ``min_tumor_ml`` and the number of
        neighbouring slices per side fed as extra channels (``architecture.context``).
        ``None`` takes the demo weights trained on T1-like post-contrast phantoms.
    """

    name = "brain-mr"
    batch_size = 8
    algorithm_name = "ainode brain MR structures and tumor"
    series_number_base = 9040

    def configure(self, meta: Mapping[str, Any]) -> None:
        self.min_tumor_ml = float(meta.get("min_tumor_ml", 0.3))
        # 2.5D weights take each slice's neighbours as extra input channels (model.json
        # architecture.context; absent or 0: one channel, plain 2D).
        self.context = int(meta.get("architecture", {}).get("context", 0))

    def preprocess(self, series: Sequence[Dataset]) -> dict[str, np.ndarray]:
        return _steps.preprocess(series, context=self.context)

    def postprocess(self, series: Sequence[Dataset], outputs: Mapping[str, np.ndarray]) -> BrainMRFindings:
        logits = outputs[_steps.OUTPUT_NAME]
        if len(logits) != len(series):
            raise ValueError(f"model returned {len(logits)} slices for {len(series)}")
        spacing = _steps.series_geometry(series)
        findings = BrainMRFindings(np.zeros((0, 0, 0), np.uint8), spacing)
        labels, _ = _steps.labels_from_logits(
            logits, (int(series[0].Rows), int(series[0].Columns)),
            voxel_ml=findings.voxel_ml, min_tumor_ml=self.min_tumor_ml,
        )
        return BrainMRFindings(labels, spacing)

    write_results = staticmethod(write_results)
    """The result objects of a series' findings: :func:`.report.write_results`."""
