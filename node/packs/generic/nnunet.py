"""``format = "nnunet"``: a trained nnU-Net v2 results folder, run with nnunetv2's own predictor.

The folder is what nnU-Net's training writes (``dataset.json``, ``plans.json``,
``fold_N/checkpoint_final.pth``); the configured ``folds`` (else every fold present) are
ensembled as nnU-Net does. The series goes in as nnU-Net reads images with SimpleITK: an
array ``(channel, slice, row, column)`` and its spacing ``(slice, row, column)`` in mm; the
segmentation comes back on the same voxels. Label names come from ``dataset.json``
``labels``. nnU-Net's predictor runs in torch (with its test-time mirroring, as nnU-Net
predicts by default); ``engine = "auto"`` and ``"torch"`` are the same here.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Mapping

import numpy as np

from .labels import label_names
from .spec import ModelSpec

__all__ = ["NnunetRunner"]


class NnunetRunner:
    """The engine of an ``nnunet`` model (see the module's docstring)."""

    name = "torch"

    def __init__(self, spec: ModelSpec) -> None:
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        root = Path(spec.path)
        with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints its notices on stdout
            self.predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False, verbose=False)
            self.predictor.initialize_from_trained_model_folder(
                str(root), use_folds=tuple(spec.folds) or None, checkpoint_name="checkpoint_final.pth")
        dataset = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
        self.names = label_names(dataset.get("labels", {}))
        self.version = spec.version or str(dataset.get("version", "unversioned"))
        folds = sorted(root.glob("fold_*/checkpoint_final.pth"))
        self.identity = b"".join(p.read_bytes()[:1 << 20] for p in folds) + (root / "plans.json").read_bytes()

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """nnU-Net's segmentation of ``inputs["image"]`` ``(1, slice, row, column)``, on the same voxels."""
        affine = np.asarray(inputs["affine"][0], float)
        spacing = [float(np.linalg.norm(affine[:3, i])) for i in (2, 1, 0)]
        image = np.asarray(inputs["image"][0], np.float32)[None]
        with contextlib.redirect_stdout(io.StringIO()):
            seg = self.predictor.predict_single_npy_array(image, {"spacing": spacing}, None, None, False)
        return {"labels": np.asarray(seg, np.int32)[None]}
