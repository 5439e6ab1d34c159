"""Held-out evaluation of a brain MR graph: Dice per class and tumour volumes, and their report."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from models.brain_mr.cases import Case, phantom_cases
from models.brain_mr.classes import CLASS_NAMES, TUMOR
from models.brain_mr.preprocess import INPUT_NAME, OUTPUT_NAME, labels_from_logits, normalise, pad_to_multiple, stack_context
from models.training import onnx_session

__all__ = ["MIN_TUMOR_ML", "TEST_SEED_BASE", "dice_scores", "evaluate", "format_report", "predict", "tumor_volume_error"]

TEST_SEED_BASE = 1_000_000
MIN_TUMOR_ML = 0.3
_N_CLASSES = len(CLASS_NAMES)


def dice_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice per class (background excluded); NaN where both are empty."""
    out = {}
    for c in range(1, _N_CLASSES):
        p, t = pred == c, truth == c
        denom = int(p.sum()) + int(t.sum())
        out[CLASS_NAMES[c]] = float(2 * (p & t).sum() / denom) if denom else float("nan")
    return out


def evaluate(
    model_path: Path,
    seeds: Sequence[int],
    *,
    contrast: str = "T1",
    min_tumor_ml: float = MIN_TUMOR_ML,
    threads: int = 1,
    cases: Sequence[Case] | None = None,
    styles: bool = False,
) -> dict[str, Any]:
    """Held-out Dice per class and tumour volumes of an ONNX model (onnxruntime, CPU), on
    ``cases`` or the phantoms of ``seeds`` (``styles``: with randomised styles).

    Returns
    -------
    dict
        ``dice`` (class → mean Dice over the volumes where the class exists in truth or
        prediction), ``mean_dice`` (mean over the classes), ``tumor_volume``
        (per volume: truth and predicted mL, and ``error_percent`` = 100 (predicted −
        truth) / truth where the truth has a tumour), ``tumor_volume_error`` (over the
        volumes with a tumour: ``cases``, ``mean_abs_percent``, ``worst_abs_percent`` and
        the ``worst_case``), ``seeds`` and ``seconds``.
    """
    t0 = time.perf_counter()
    session = onnx_session(model_path, threads)
    cases = list(cases) if cases is not None else phantom_cases(seeds, contrast, styles)
    per_class: dict[str, list[float]] = {name: [] for name in CLASS_NAMES[1:]}
    volumes = []
    for case in tqdm(cases, desc="evaluating", unit="phantom", leave=False, disable=None):
        labels = predict(session, case.volume, case.voxel_ml, min_tumor_ml)
        for name, value in dice_scores(labels, case.labels).items():
            if not np.isnan(value):
                per_class[name].append(value)
        truth_ml = float((case.labels == TUMOR).sum() * case.voxel_ml)
        predicted_ml = float((labels == TUMOR).sum() * case.voxel_ml)
        volumes.append({
            "case": case.name,
            "truth_ml": round(truth_ml, 3),
            "predicted_ml": round(predicted_ml, 3),
            "error_percent": round(100.0 * (predicted_ml - truth_ml) / truth_ml, 1) if truth_ml > 0 else None,
        })
    dice = {name: round(float(np.mean(v)), 4) if v else float("nan") for name, v in per_class.items()}
    return {
        "dice": dice,
        "mean_dice": round(float(np.nanmean(list(dice.values()))), 4),
        "tumor_volume": volumes,
        "tumor_volume_error": tumor_volume_error(volumes),
        "seeds": [int(s) for s in seeds],
        "styles": styles,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def tumor_volume_error(volumes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Summary of the per-volume tumour volume errors (volumes with a tumour in the truth only)."""
    rows = [v for v in volumes if v.get("truth_ml", 0) > 0]
    if not rows:
        return {"cases": 0, "mean_abs_percent": None, "worst_abs_percent": None, "worst_case": None}
    errors = [100.0 * abs(v["predicted_ml"] - v["truth_ml"]) / v["truth_ml"] for v in rows]
    worst = int(np.argmax(errors))
    return {"cases": len(rows), "mean_abs_percent": round(float(np.mean(errors)), 1),
            "worst_abs_percent": round(float(errors[worst]), 1), "worst_case": rows[worst]["case"]}


def format_report(report: dict[str, Any]) -> str:
    """Human-readable held-out report: Dice per class, tumour volume per case and the worst case."""
    lines = ["Dice: " + ", ".join(f"{k} {v:.3f}" for k, v in report["dice"].items())
             + f"; mean {report['mean_dice']:.3f}", "", "tumour volume:",
             f"{'case':<16} {'truth mL':>9} {'predicted mL':>13} {'error':>8}"]
    for v in report["tumor_volume"]:
        err = "" if v.get("error_percent") is None else f"{v['error_percent']:+.1f} %"
        truth = f"{v['truth_ml']:.2f}" if v["truth_ml"] > 0 else "0 (none)"
        lines.append(f"{v['case']:<16} {truth:>9} {v['predicted_ml']:>13.2f} {err:>8}")
    summary = report.get("tumor_volume_error") or tumor_volume_error(report["tumor_volume"])
    if summary["cases"]:
        lines.append(f"worst |error| {summary['worst_abs_percent']:.1f} % ({summary['worst_case']}), "
                     f"mean |error| {summary['mean_abs_percent']:.1f} % over {summary['cases']} volumes with a tumour")
    else:
        lines.append("no volume with a tumour in the truth")
    lines.append(f"({report['seconds']} s)")
    return "\n".join(lines)


def predict(session: Any, volume: np.ndarray, voxel_ml: float, min_tumor_ml: float = MIN_TUMOR_ML,
            batch_size: int = 8) -> np.ndarray:
    """Label volume predicted by an onnxruntime session for one raw volume.

    The number of input channels of the graph (1, or 2k + 1 for 2.5D input) sets how many
    neighbouring slices each slice carries.
    """
    channels = session.get_inputs()[0].shape[1]
    context = (int(channels) - 1) // 2 if isinstance(channels, int) else 0
    image = pad_to_multiple(stack_context(normalise(volume), context))
    logits = np.concatenate([
        session.run([OUTPUT_NAME], {INPUT_NAME: image[i:i + batch_size]})[0]
        for i in range(0, len(image), batch_size)
    ])
    labels, _ = labels_from_logits(logits, volume.shape[1:], voxel_ml=voxel_ml, min_tumor_ml=min_tumor_ml)
    return labels
