"""Train, export and evaluate the brain MR segmentation networks.

Data are *cases*: a volume of stored pixel values ``(n, rows, cols)`` and a label
volume of the same shape (values of :data:`CLASS_NAMES`, :data:`UNLABELLED` where nobody
annotated). They come from phantoms (:func:`phantom_cases`) or from the user's own
DICOM series with NIfTI or DICOM SEG labels (:mod:`models.brain_mr.data`).

Seeds never overlap: training phantoms use ``seed .. seed + n - 1`` (below
:data:`TEST_SEED_BASE`); held-out phantoms start at :data:`TEST_SEED_BASE`
(1,000,000). A phantom whose seed is 3 modulo 4 has no tumour.

Training samples slices that have at least one labelled voxel, cuts random
``crop``-pixel squares (half of them centred near the tumour when the slice has one),
flips left-right at random, scales intensities by 0.85-1.15, and minimises a weighted
cross-entropy averaged over labelled voxels only, plus a soft Dice term (mean over all
classes, background included, also over labelled voxels only) that keeps the small
structures learning in short runs. Voxels labelled :data:`UNLABELLED` (e.g. the slices between
every k-th annotated slice) are masked out of both terms and contribute nothing.
Weightings of the cross-entropy (:data:`WEIGHTINGS`):

* ``frequency``: class weights by median frequency balancing (median class frequency
  divided by the class frequency, over the labelled training voxels);
* ``probability``: focal-like, each voxel weighted by ``(1 - p_true) ** 2``;
* ``distance``: each voxel weighted by ``1 + 5 exp(-d² / 18)``, ``d`` its distance in
  pixels to the nearest label boundary of its slice (U-Net style border weighting).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from pydicom.uid import generate_uid

from models.brain_mr.cases import Case, phantom_cases, thin_labels, thinned
from models.brain_mr.classes import CLASS_NAMES
from models.brain_mr.comparison import compare
from models.brain_mr.evaluation import (
    MIN_TUMOR_ML, TEST_SEED_BASE, dice_scores, evaluate, format_report, predict, tumor_volume_error,
)
from models.brain_mr.fit import WEIGHTINGS, FitOptions, export_onnx, train_model
from models.brain_mr.preprocess import INPUT_NAME, OUTPUT_NAME
from models.training import output_folder, quiet, save_weights, timestamp_version, write_json

__all__ = [
    "MIN_TUMOR_ML", "TEST_SEED_BASE", "WEIGHTINGS", "Case", "FitOptions", "compare", "dice_scores", "evaluate",
    "export_onnx", "format_report", "phantom_cases", "predict", "thin_labels", "train", "train_model",
    "tumor_volume_error",
]

MODEL_NAME = "brain-mr"


def train(
    out_dir: Path,
    *,
    cases: Sequence[Case] | None = None,
    phantoms: int = 40,
    seed: int = 0,
    contrast: str = "T1",
    label_every: int = 1,
    fit: FitOptions = FitOptions(steps=1500),
    test_phantoms: int = 8,
    styled_phantoms: int = 0,
    threads: int = 1,
    version: str | None = None,
    extra_meta: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train one configuration, export ``model.onnx``/``model.pt``/``model.json`` into ``out_dir``.

    ``cases`` are the user's own data; without them ``phantoms`` training phantoms
    (seeds ``seed ..``) are generated and ``test_phantoms`` held-out phantoms are
    evaluated into ``model.json``'s ``metrics``. ``label_every > 1`` keeps only every
    k-th slice's labels (a random offset per case). ``fit``: how the network is trained
    (:class:`~models.brain_mr.fit.FitOptions`). ``styled_phantoms``: that many more
    training phantoms (the seeds after the plain ones) with randomised scanner and patient
    styles (:class:`~models.phantoms.brain_mr.BrainMRStyle`); the held-out phantoms are then
    evaluated plain and styled.
    """
    say = quiet(log)
    out_dir = output_folder(out_dir)
    t0 = time.perf_counter()
    on_phantoms = cases is None
    if on_phantoms:
        if seed < 0 or seed + phantoms + styled_phantoms > TEST_SEED_BASE:
            raise ValueError(f"training seeds must lie in 0..{TEST_SEED_BASE - 1}")
        cases = phantom_cases(range(seed, seed + phantoms), contrast)
        cases += phantom_cases(range(seed + phantoms, seed + phantoms + styled_phantoms), contrast, styles=True)
    generation_s = time.perf_counter() - t0
    cases = thinned(cases, label_every, seed)
    model, facts = train_model(cases, fit, seed=seed, threads=threads, log=say)
    context = fit.context
    model_path = out_dir / "model.onnx"
    export_onnx(model, model_path, channels=2 * context + 1)
    save_weights(model, out_dir / "model.pt")
    meta = {
        "name": MODEL_NAME,
        "version": timestamp_version(version),
        "device_uid": generate_uid(prefix=None),
        "classes": list(CLASS_NAMES),
        "contrast": contrast,
        "min_tumor_ml": MIN_TUMOR_ML,
        "architecture": facts.pop("architecture"),
        "input": {"name": INPUT_NAME, "shape": ["N", 2 * context + 1, "H", "W"],
                  "note": "H, W multiples of 8" + (f"; channels: slices k-{context}..k+{context} of slice k"
                                                   if context else "")},
        "output": {"name": OUTPUT_NAME, "shape": ["N", len(CLASS_NAMES), "H", "W"]},
        "trained_on": {
            "data": f"models.phantoms.brain_mr phantoms, contrast {contrast}" if on_phantoms else "user data",
            "cases": len(cases),
            "seeds": [seed, seed + phantoms - 1] if on_phantoms else None,
            **({"styled_seeds": [seed + phantoms, seed + phantoms + styled_phantoms - 1]} if styled_phantoms else {}),
            "label_every": label_every,
            "generation_seconds": round(generation_s, 1),
            **facts,
        },
        "metrics": {"test": None},
        **(extra_meta or {}),
    }
    if on_phantoms and test_phantoms > 0:
        seeds = range(TEST_SEED_BASE, TEST_SEED_BASE + test_phantoms)
        meta["metrics"]["test"] = evaluate(model_path, seeds, contrast=contrast, threads=threads)
        say(f"held-out: {json.dumps(meta['metrics']['test']['dice'])}")
        if styled_phantoms:
            meta["metrics"]["test_styled"] = evaluate(model_path, seeds, contrast=contrast, threads=threads, styles=True)
            say(f"held-out, styled: {json.dumps(meta['metrics']['test_styled']['dice'])}")
    write_json(out_dir / "model.json", meta)
    return meta
