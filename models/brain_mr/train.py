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

import datetime as _dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm
from pydicom.uid import generate_uid
from scipy import ndimage

from models.brain_mr.classes import CLASS_NAMES, TUMOR, UNLABELLED
from models.brain_mr.preprocess import (INPUT_NAME, OUTPUT_NAME, labels_from_logits, normalise, pad_to_multiple,
                                        stack_context)
from models.onnx_export import export_onnx as _export_onnx

__all__ = [
    "MIN_TUMOR_ML",
    "TEST_SEED_BASE",
    "WEIGHTINGS",
    "Case",
    "compare",
    "export_onnx",
    "dice_scores",
    "evaluate",
    "phantom_cases",
    "format_report",
    "thin_labels",
    "tumor_volume_error",
    "train",
    "train_model",
]

TEST_SEED_BASE = 1_000_000
WEIGHTINGS: tuple[str, ...] = ("frequency", "probability", "distance")
MIN_TUMOR_ML = 0.3
MODEL_NAME = "brain-mr"
_N_CLASSES = len(CLASS_NAMES)


@dataclass
class Case:
    """One training or evaluation volume."""

    volume: np.ndarray
    labels: np.ndarray
    voxel_ml: float
    name: str = ""


def phantom_cases(seeds: Sequence[int], contrast: str = "T1", styles: bool = False) -> list[Case]:
    """Phantom volumes and their label volumes (tumour unless ``seed % 4 == 3``; ``styles``:
    with their randomised scanner and patient styles)."""
    from models.phantoms.brain_mr import generate_brain_mr

    cases = []
    for s in seeds:
        p = generate_brain_mr(int(s), tumor=int(s) % 4 != 3, contrasts=(contrast,), dicom=False, styles=styles)
        cases.append(Case(p.images[contrast], p.labels, p.voxel_ml, f"seed {int(s)}"))
    return cases


def thin_labels(labels: np.ndarray, every: int, offset: int = 0) -> np.ndarray:
    """Keep the labels of every ``every``-th slice (from ``offset``); the rest UNLABELLED."""
    out = np.full_like(labels, UNLABELLED)
    out[offset::every] = labels[offset::every]
    return out


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
    session = _session(model_path, threads)
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


def train_model(
    cases: Sequence[Case],
    *,
    variant: str = "frru",
    weighting: str = "probability",
    steps: int = 600,
    seed: int = 0,
    crop: int = 96,
    batch_size: int = 8,
    learning_rate: float = 3e-3,
    width: int = 10,
    residual_channels: int = 8,
    context: int = 0,
    tumor_boundary_weight: float = 0.0,
    tumor_slice_fraction: float = 0.0,
    threads: int = 1,
    log: Callable[[str], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train one network; returns ``(torch model in eval mode, training facts)``.

    ``context`` k > 0 trains a 2.5D network: each slice's k neighbours on either side
    are extra input channels (:func:`~models.brain_mr.preprocess.stack_context`).
    ``tumor_boundary_weight`` W > 0 multiplies each voxel's cross-entropy weight by
    ``1 + W exp(-d² / 2)``, ``d`` its distance in pixels to the nearest tumour boundary
    (voxels on either side of a tumour/other-label edge: ``d = 0``).
    ``tumor_slice_fraction`` f > 0 draws each sample from the slices with a tumour with
    probability f (otherwise from all labelled slices, as before).
    """
    import torch
    from torch.nn import functional as F

    from models.brain_mr.net import SegNet

    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    say = log or (lambda _m: None)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    images, labels = [], []
    for case in cases:
        norm = stack_context(normalise(case.volume), context)
        for k in range(len(norm)):
            if (case.labels[k] != UNLABELLED).any():
                images.append(norm[k])
                labels.append(case.labels[k])
    if not images:
        raise ValueError("no labelled slice in the training cases")
    labelled = np.concatenate([lab[lab != UNLABELLED] for lab in labels])
    freq = np.bincount(labelled, minlength=_N_CLASSES).astype(float) / labelled.size
    class_w = np.where(freq > 0, np.median(freq[freq > 0]) / np.maximum(freq, 1e-12), 0.0)
    class_w_t = torch.tensor(class_w, dtype=torch.float32)
    distance_w = [_distance_weights(lab) for lab in labels] if weighting == "distance" else None
    if tumor_boundary_weight > 0:
        boundary_w = [_tumor_boundary_weights(lab, tumor_boundary_weight) for lab in labels]
        distance_w = boundary_w if distance_w is None else [a * b for a, b in zip(distance_w, boundary_w)]
    tumor_slices = np.flatnonzero([(lab == TUMOR).any() for lab in labels])

    model = SegNet(variant, in_channels=2 * context + 1, width=width, residual_channels=residual_channels)
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=learning_rate, total_steps=steps, pct_start=0.1)
    t0 = time.perf_counter()
    losses: list[float] = []
    model.train()
    for step in range(steps):
        idx = rng.integers(0, len(images), size=batch_size)
        if tumor_slice_fraction > 0 and tumor_slices.size:
            pick = rng.random(batch_size) < tumor_slice_fraction
            idx[pick] = tumor_slices[rng.integers(0, tumor_slices.size, size=int(pick.sum()))]
        x, y, w = _batch(images, labels, distance_w, idx, crop, rng)
        logits = model(torch.from_numpy(x))
        target = torch.from_numpy(y).long()
        mask = (target != UNLABELLED).float()
        target = target.clamp(max=_N_CLASSES - 1)
        logp = F.log_softmax(logits, 1).gather(1, target[:, None])[:, 0]
        if weighting == "frequency":
            weight = class_w_t[target]
        elif weighting == "probability":
            weight = (1.0 - logp.exp()) ** 2
        elif weighting == "distance":
            weight = torch.from_numpy(w)
        if tumor_boundary_weight > 0 and weighting != "distance":
            weight = weight * torch.from_numpy(w)
        loss = -(weight * logp * mask).sum() / mask.sum().clamp(min=1.0)
        loss = loss + _soft_dice_loss(F.softmax(logits, 1), target, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 100 == 0:
            say(f"{variant}/{weighting} step {step + 1}/{steps} loss {np.mean(losses[-100:]):.4f} "
                f"({time.perf_counter() - t0:.0f}s)")
    model.eval()
    facts = {
        "variant": variant,
        "weighting": weighting,
        "steps": steps,
        "batch_size": batch_size,
        "crop": crop,
        "learning_rate": learning_rate,
        "slices_used": len(images),
        "labelled_voxel_fraction": round(float(labelled.size / (len(images) * images[0][0].size)), 4),
        "class_weights": [round(float(v), 4) for v in class_w] if weighting == "frequency" else None,
        "tumor_boundary_weight": tumor_boundary_weight,
        "tumor_slice_fraction": tumor_slice_fraction,
        "training_seconds": round(time.perf_counter() - t0, 1),
        "final_loss": round(float(np.mean(losses[-50:])), 5),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "architecture": {"variant": variant, "in_channels": 2 * context + 1, "context": context,
                         "classes": _N_CLASSES, "width": width, "residual_channels": residual_channels},
    }
    return model, facts


def train(
    out_dir: Path,
    *,
    cases: Sequence[Case] | None = None,
    phantoms: int = 40,
    seed: int = 0,
    contrast: str = "T1",
    variant: str = "frru",
    weighting: str = "probability",
    label_every: int = 1,
    steps: int = 1500,
    batch_size: int = 8,
    context: int = 0,
    tumor_boundary_weight: float = 0.0,
    tumor_slice_fraction: float = 0.0,
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
    k-th slice's labels (a random offset per case). ``styled_phantoms``: that many more
    training phantoms (the seeds after the plain ones) with randomised scanner and patient
    styles (:class:`~models.phantoms.brain_mr.BrainMRStyle`); the held-out phantoms are then
    evaluated plain and styled.
    """
    import torch

    say = log or (lambda _m: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    on_phantoms = cases is None
    if on_phantoms:
        if seed < 0 or seed + phantoms + styled_phantoms > TEST_SEED_BASE:
            raise ValueError(f"training seeds must lie in 0..{TEST_SEED_BASE - 1}")
        cases = phantom_cases(range(seed, seed + phantoms), contrast)
        cases += phantom_cases(range(seed + phantoms, seed + phantoms + styled_phantoms), contrast, styles=True)
    generation_s = time.perf_counter() - t0
    cases = _thinned(cases, label_every, seed)
    model, facts = train_model(cases, variant=variant, weighting=weighting, steps=steps, seed=seed,
                               batch_size=batch_size, context=context, tumor_boundary_weight=tumor_boundary_weight,
                               tumor_slice_fraction=tumor_slice_fraction, threads=threads, log=say)
    model_path = out_dir / "model.onnx"
    export_onnx(model, model_path, channels=2 * context + 1)
    torch.save(model.state_dict(), out_dir / "model.pt")
    meta = {
        "name": MODEL_NAME,
        "version": version or _dt.datetime.now(_dt.timezone.utc).strftime("phantom-%Y%m%d%H%M%S"),
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
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def compare(
    out_dir: Path,
    *,
    phantoms: int = 30,
    test_phantoms: int = 8,
    steps: int = 400,
    batch_size: int = 6,
    seed: int = 0,
    contrast: str = "T1",
    threads: int = 1,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Both skip variants × the three weightings, plus the every-4th-slice run.

    Every run uses the same training phantoms, steps and seed; the every-4th-slice run
    uses the best (variant, weighting) of the full-label runs. Held-out Dice per class
    of every run is written to ``out_dir/comparison.json``; each run's weights
    (``model.onnx``, ``model.pt``) and training facts are kept in ``out_dir/<run>/``.
    """
    import torch

    say = log or (lambda _m: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cases = phantom_cases(range(seed, seed + phantoms), contrast)
    test_seeds = list(range(TEST_SEED_BASE, TEST_SEED_BASE + test_phantoms))
    test_cases = phantom_cases(test_seeds, contrast)
    say(f"generated {phantoms} + {test_phantoms} phantoms in {time.perf_counter() - t0:.0f}s")
    runs: dict[str, Any] = {}

    def run(name: str, variant: str, weighting: str, every: int) -> None:
        model, facts = train_model(_thinned(cases, every, seed), variant=variant, weighting=weighting,
                                   steps=steps, batch_size=batch_size, seed=seed, threads=threads, log=say)
        path = out_dir / name / "model.onnx"
        path.parent.mkdir(exist_ok=True)
        export_onnx(model, path)
        torch.save(model.state_dict(), path.with_name("model.pt"))
        (path.with_name("facts.json")).write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
        result = evaluate(path, test_seeds, cases=test_cases, threads=threads)
        runs[name] = {"variant": variant, "weighting": weighting, "label_every": every,
                      "training_seconds": facts["training_seconds"], "parameters": facts["parameters"],
                      "steps": steps, "batch_size": batch_size,
                      "dice": result["dice"], "mean_dice": result["mean_dice"],
                      "tumor_volume": result["tumor_volume"]}
        say(f"{name}: mean Dice {result['mean_dice']} {json.dumps(result['dice'])}")
        _write_comparison(out_dir, runs, phantoms, seed, test_seeds, steps, contrast)

    for variant in ("unet", "frru"):
        for weighting in WEIGHTINGS:
            run(f"{variant}-{weighting}", variant, weighting, 1)
    best = max((r for r in runs.values() if r["label_every"] == 1), key=lambda r: r["mean_dice"])
    run(f"{best['variant']}-{best['weighting']}-every4", best["variant"], best["weighting"], 4)
    return _write_comparison(out_dir, runs, phantoms, seed, test_seeds, steps, contrast)


def _write_comparison(out_dir: Path, runs: dict, phantoms: int, seed: int, test_seeds: list[int],
                      steps: int, contrast: str) -> dict[str, Any]:
    summary = {
        "training_seeds": [seed, seed + phantoms - 1],
        "test_seeds": [test_seeds[0], test_seeds[-1]],
        "steps_per_run": steps,
        "contrast": contrast,
        "runs": runs,
    }
    (out_dir / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def export_onnx(model: Any, path: Path, size: int = 128, channels: int = 1) -> None:
    """Export ``model`` to ONNX (opset 17, dynamic batch and spatial axes; ``channels`` fixed)."""
    _export_onnx(model, (1, channels, size, size), path, input_name=INPUT_NAME, output_names=[OUTPUT_NAME],
                 spatial_dynamic=True)


def _thinned(cases: Sequence[Case], every: int, seed: int) -> list[Case]:
    if every <= 1:
        return list(cases)
    rng = np.random.default_rng(seed + 7)
    return [Case(c.volume, thin_labels(c.labels, every, int(rng.integers(every))), c.voxel_ml, c.name)
            for c in cases]


def _soft_dice_loss(prob: Any, target: Any, mask: Any, eps: float = 1.0) -> Any:
    """1 - mean soft Dice of all classes (background included) over the labelled voxels of the batch."""
    from torch.nn import functional as F

    onehot = F.one_hot(target, _N_CLASSES).permute(0, 3, 1, 2).float() * mask[:, None]
    prob = prob * mask[:, None]
    inter = (prob * onehot).sum(dim=(0, 2, 3))
    denom = prob.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    return 1.0 - ((2.0 * inter + eps) / (denom + eps)).mean()


def _distance_weights(labels: np.ndarray, w0: float = 5.0, sigma: float = 3.0) -> np.ndarray:
    """``1 + w0 exp(-d² / 2σ²)``, ``d`` the distance in pixels to the nearest label boundary."""
    lab = labels.astype(np.int16)
    boundary = np.zeros(lab.shape, dtype=bool)
    boundary[:-1] |= lab[:-1] != lab[1:]
    boundary[1:] |= lab[:-1] != lab[1:]
    boundary[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    boundary[:, 1:] |= lab[:, :-1] != lab[:, 1:]
    if not boundary.any():
        return np.ones(lab.shape, dtype=np.float32)
    d = ndimage.distance_transform_edt(~boundary)
    return (1.0 + w0 * np.exp(-(d ** 2) / (2 * sigma ** 2))).astype(np.float32)


def _tumor_boundary_weights(labels: np.ndarray, w0: float, sigma: float = 1.0) -> np.ndarray:
    """``1 + w0 exp(-d² / 2σ²)``, ``d`` the distance in pixels to the nearest tumour boundary (both sides)."""
    tumor = labels == TUMOR
    if not tumor.any():
        return np.ones(labels.shape, dtype=np.float32)
    edge = np.zeros(labels.shape, dtype=bool)
    for axis in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        diff = tumor[tuple(a)] != tumor[tuple(b)]
        diff &= (labels[tuple(a)] != UNLABELLED) & (labels[tuple(b)] != UNLABELLED)
        edge[tuple(a)] |= diff
        edge[tuple(b)] |= diff
    if not edge.any():
        return np.ones(labels.shape, dtype=np.float32)
    d = ndimage.distance_transform_edt(~edge)
    return (1.0 + w0 * np.exp(-(d ** 2) / (2 * sigma ** 2))).astype(np.float32)


def _batch(images, labels, distance_w, idx, crop, rng):
    xs, ys, ws = [], [], []
    for i in idx:
        img, lab = images[i], labels[i]
        rows, cols = img.shape[-2:]
        size_r, size_c = min(crop, rows), min(crop, cols)
        tumor = np.argwhere(lab == TUMOR)
        if tumor.size and rng.random() < 0.5:
            r, c = tumor[rng.integers(len(tumor))]
            r0 = int(np.clip(r - rng.integers(size_r // 4, 3 * size_r // 4), 0, rows - size_r))
            c0 = int(np.clip(c - rng.integers(size_c // 4, 3 * size_c // 4), 0, cols - size_c))
        else:
            r0 = int(rng.integers(0, rows - size_r + 1))
            c0 = int(rng.integers(0, cols - size_c + 1))
        window = (slice(r0, r0 + size_r), slice(c0, c0 + size_c))
        x = img[(slice(None), *window)] * np.float32(rng.uniform(0.85, 1.15))
        y = lab[window]
        w = distance_w[i][window] if distance_w is not None else np.ones_like(x)
        if rng.random() < 0.5:
            x, y, w = x[..., ::-1], y[:, ::-1], w[:, ::-1]
        if len(x) > 1 and rng.random() < 0.5:  # 2.5D: the neighbours above and below swap
            x = x[::-1]
        xs.append(x)
        ys.append(y)
        ws.append(w)
    x = pad_to_multiple(np.stack(xs))
    y = pad_to_multiple(np.stack(ys).astype(np.int64))
    w = pad_to_multiple(np.stack(ws))
    return (np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y),
            np.ascontiguousarray(w, dtype=np.float32))


def _session(model_path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
