"""Held-out FROC evaluation of a CXR nodule graph, with the operating point at 0.2 FP/image."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from models.cxr_nodule.froc import FROC, froc, nodule_scores, render_froc_png
from models.cxr_nodule.preprocess import INPUT_NAME, MODEL_SIZE, OUTPUT_NAME, model_detections, model_input
from models.cxr_nodule.samples import PHANTOM_SIZE, Sample, make_samples, min_radius
from models.training import onnx_session

__all__ = ["CANDIDATE_THRESHOLD", "SIZE_BINS", "TEST_SEED_BASE", "VAL_SEED_BASE", "EvalReport", "evaluate"]

TEST_SEED_BASE = 1_000_000
VAL_SEED_BASE = 2_000_000
CANDIDATE_THRESHOLD = 0.2
SIZE_BINS = (("<10 mm", 0.0, 10.0), ("10-15 mm", 10.0, 15.0), ("15-20 mm", 15.0, 20.0), (">=20 mm", 20.0, 1e9))


@dataclass
class EvalReport:
    """Held-out FROC of one ONNX model.

    Sensitivities at 0.2 and 1 false positive per image (all nodules, and nodules of
    at least 15 mm); the score threshold that keeps 0.2 FP/image (``None`` when no
    detection is made); the median ratio of detected to true diameter of found nodules.
    """

    seed_range: list[int]
    n_images: int
    n_nodules: int
    sensitivity_at_0_2_fp: float
    sensitivity_at_1_fp: float
    sensitivity_15mm_at_0_2_fp: float
    score_threshold_at_0_2_fp: float | None
    diameter_ratio_median: float | None
    seconds: float
    by_size_at_0_2_fp: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per nominal-size bin (mm): nodules, and sensitivity at the 0.2 FP/image threshold of all nodules."""
    at_score_threshold: dict[str, float] | None = None
    """With a given ``score_threshold`` (the pack's): the false positives per image and the
    sensitivity the node's reported detections have on these images."""
    detector_size: int = PHANTOM_SIZE
    """Pixels of the phantoms' detector (resampled to the model's grid)."""
    styles: bool = False
    """Whether the phantoms have randomised styles (:class:`~models.phantoms.cxr.CXRStyle`)."""


def evaluate(
    model_path: Path, seeds: Sequence[int] | None = None, *, samples: Sequence[Sample] | None = None,
    froc_png: Path | None = None, score_threshold: float | None = None, detector_size: int = PHANTOM_SIZE,
    styles: bool = False,
) -> tuple[EvalReport, FROC]:
    """FROC of ``model_path`` on phantoms ``seeds`` (or given samples, on the model's grid).

    Phantoms are resampled to the model's input size (the graph's static input width).
    """
    started = time.perf_counter()
    session = onnx_session(model_path)
    if samples is None:
        width = session.get_inputs()[0].shape[-1]
        samples = make_samples(list(seeds or []), size=width if isinstance(width, int) else MODEL_SIZE, styles=styles)
    detections, truths = [], []
    truths_15 = []
    ratios = []
    for sample in tqdm(samples, desc="evaluating", unit="image", leave=False, disable=None):
        floor = min_radius(sample.image.shape[-1])
        (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: model_input(sample.image)[None]})
        found = model_detections(logits[0], CANDIDATE_THRESHOLD)
        detections.append([(r, c, s) for r, c, s, _ in found])
        truths.append(sample.truths)
        for (tr, tc, radius), diameter_mm in zip(sample.truths, sample.diameters_mm):
            hits = [m for r, c, s, m in found if np.hypot(r - tr, c - tc) <= radius]
            if hits and radius > floor:
                ratios.append(2 * np.sqrt(hits[0].sum() / np.pi) / (2 * radius))
        truths_15.append([t for t, d in zip(sample.truths, sample.diameters_mm) if d >= 15.0])
    curve = froc(detections, truths)
    curve_15 = froc(detections, truths_15)
    operating = curve.threshold_at(0.2)
    found = [s for image in nodule_scores(detections, truths) for s in image]
    sizes = [d for sample in samples for d in sample.diameters_mm]
    by_size = {}
    for name, lo, hi in SIZE_BINS:
        inside = [f for f, d in zip(found, sizes) if lo <= d < hi]
        if inside:
            by_size[name] = {"nodules": len(inside),
                             "sensitivity": round(sum(f >= operating for f in inside) / len(inside), 3)}
    if froc_png is not None:
        render_froc_png(curve, froc_png)
    seeds = list(seeds or [])
    report = EvalReport(
        seed_range=[min(seeds), max(seeds)] if seeds else [],
        n_images=curve.n_images,
        n_nodules=curve.n_nodules,
        sensitivity_at_0_2_fp=curve.sensitivity_at(0.2),
        sensitivity_at_1_fp=curve.sensitivity_at(1.0),
        sensitivity_15mm_at_0_2_fp=curve_15.sensitivity_at(0.2),
        score_threshold_at_0_2_fp=curve.threshold_at(0.2) if np.isfinite(curve.threshold_at(0.2)) else None,
        diameter_ratio_median=round(float(np.median(ratios)), 3) if ratios else None,
        seconds=round(time.perf_counter() - started, 1),
        by_size_at_0_2_fp=by_size,
        at_score_threshold=_operating_point(curve, score_threshold) if score_threshold is not None else None,
        detector_size=detector_size,
        styles=styles,
    )
    return report, curve


def _operating_point(curve: FROC, score_threshold: float) -> dict[str, float]:
    """FP/image and sensitivity of the detections scoring at least ``score_threshold``."""
    kept = np.nonzero(curve.thresholds >= score_threshold)[0]
    last = int(kept[-1]) if len(kept) else 0
    return {"score_threshold": score_threshold, "fp_per_image": round(float(curve.fp_per_image[last]), 3),
            "sensitivity": round(float(curve.sensitivity[last]), 3)}
