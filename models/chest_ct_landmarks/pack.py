"""The chest CT landmark model pack: the node's view of it."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from pydicom import Dataset

from node.dicom.attributes import VOLUME
from node.packs.base import PackBase

from . import preprocess as _steps
from .findings import DEFAULT_FRACTIONS, LandmarkFindings
from .report import write_results

__all__ = ["ChestCTLandmarksPack"]


class ChestCTLandmarksPack(PackBase):
    """Three 2D slice classifiers (lung apex, carina, upper diaphragm); one pick each.

    Parameters
    ----------
    weights:
        An ONNX graph with input ``image`` and outputs ``apex``, ``carina``,
        ``diaphragm``; its ``model.json`` beside it gives version, DeviceUID and the
        representative-slice fractions and, as ``"crop"``, the preprocessing crop the
        weights were trained with (``body`` when absent; see
        :data:`~models.chest_ct_landmarks.preprocess.CROPS`), as ``"carina_window"``,
        where between the apex and diaphragm picks the carina is picked (none when absent),
        as ``"airway_input"``, that the graph also reads the square around the trachea
        (input ``airway``), and, as ``"diaphragm_pick"``, how the diaphragm slice is picked
        (``argmax`` when absent, or ``lowest``: the most inferior slice scoring at least 0.5).
        ``None`` takes the demo weights trained on phantoms.

    Raises
    ------
    ValueError
        If ``model.json`` names an unknown crop or an invalid carina window.
    """

    name = "chest-ct-landmarks"
    required_attributes = VOLUME
    """Checked on every image at load (a CT volume: matrix, rescale to HU, Pixel Spacing and plane geometry)."""
    batch_size = 32
    algorithm_name = "ainode chest CT landmarks"
    series_number_base = 9010

    def configure(self, meta: Mapping[str, Any]) -> None:
        fractions = meta.get("representative_fractions")
        self.fractions: tuple[tuple[str, float], ...] = (
            tuple((str(label), float(f)) for label, f in fractions) if fractions else DEFAULT_FRACTIONS
        )
        self.carina_window = _steps.check_carina_window(meta.get("carina_window"))
        self.crop: str = str(meta.get("crop") or _steps.DEFAULT_CROP)
        if self.crop not in _steps.CROPS:
            raise ValueError(f"{self._weights.with_suffix('.json')}: crop {self.crop!r} is not one of "
                             f"{', '.join(_steps.CROPS)}")
        self.diaphragm_pick: str = str(meta.get("diaphragm_pick") or "argmax")
        if self.diaphragm_pick not in _steps.DIAPHRAGM_PICKS:
            raise ValueError(f"{self._weights.with_suffix('.json')}: diaphragm_pick {self.diaphragm_pick!r} is not "
                             f"one of {', '.join(_steps.DIAPHRAGM_PICKS)}")
        self.airway: bool = _steps.AIRWAY_INPUT == (meta.get("airway_input") or {}).get("name")

    def preprocess(self, series: Sequence[Dataset]) -> dict[str, np.ndarray]:
        return _steps.preprocess(series, self.crop, airway=self.airway)

    def postprocess(self, series: Sequence[Dataset], outputs: Mapping[str, np.ndarray]) -> LandmarkFindings:
        findings = _steps.postprocess(outputs, self.fractions, self.carina_window, self.diaphragm_pick)
        if findings.scores.shape[0] != len(series):
            raise ValueError(f"model returned {findings.scores.shape[0]} slices for {len(series)}")
        return findings

    write_results = staticmethod(write_results)
    """The result objects of a series' findings: :func:`.report.write_results`."""
