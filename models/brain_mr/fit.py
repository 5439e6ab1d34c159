"""Training one brain MR network: weighted cross-entropy plus soft Dice on random crops, and its ONNX export."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from models.brain_mr.cases import Case
from models.brain_mr.classes import CLASS_NAMES, TUMOR, UNLABELLED
from models.brain_mr.loss_weights import distance_weights, soft_dice_loss, tumor_boundary_weights
from models.brain_mr.preprocess import INPUT_NAME, OUTPUT_NAME
from models.brain_mr.training_data import crop_batch, labelled_slices
from models.training import adamw, one_cycle, optimise, parameter_count, quiet, seed_torch
from models.training import export_onnx as _export_onnx

__all__ = ["WEIGHTINGS", "FitOptions", "export_onnx", "train_model"]

WEIGHTINGS: tuple[str, ...] = ("frequency", "probability", "distance")
_N_CLASSES = len(CLASS_NAMES)


@dataclass(frozen=True)
class FitOptions:
    """How :func:`train_model` trains one network (the defaults: a short run).

    ``variant``: the skip connections (``unet`` or ``frru``); ``weighting``: the
    cross-entropy weighting, one of :data:`WEIGHTINGS`; ``steps`` of ``batch_size`` random
    ``crop``-pixel crops, at a one-cycle ``learning_rate``; ``width`` and
    ``residual_channels`` size the network.
    ``context`` k > 0 trains a 2.5D network: each slice's k neighbours on either side
    are extra input channels (:func:`~models.brain_mr.preprocess.stack_context`).
    ``tumor_boundary_weight`` W > 0 multiplies each voxel's cross-entropy weight by
    ``1 + W exp(-d² / 2)``, ``d`` its distance in pixels to the nearest tumour boundary
    (voxels on either side of a tumour/other-label edge: ``d = 0``).
    ``tumor_slice_fraction`` f > 0 draws each sample from the slices with a tumour with
    probability f (otherwise from all labelled slices, as before).
    """

    variant: str = "frru"
    weighting: str = "probability"
    steps: int = 600
    crop: int = 96
    batch_size: int = 8
    learning_rate: float = 3e-3
    width: int = 10
    residual_channels: int = 8
    context: int = 0
    tumor_boundary_weight: float = 0.0
    tumor_slice_fraction: float = 0.0


def train_model(
    cases: Sequence[Case],
    options: FitOptions = FitOptions(),
    *,
    seed: int = 0,
    threads: int = 1,
    log: Callable[[str], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train one network as ``options`` say; returns ``(torch model in eval mode, training facts)``."""
    import torch

    from models.brain_mr.net import SegNet

    variant, weighting, steps, crop, batch_size = (
        options.variant, options.weighting, options.steps, options.crop, options.batch_size)
    context, tumor_boundary_weight = options.context, options.tumor_boundary_weight
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    say = quiet(log)
    rng = seed_torch(seed, threads)
    images, labels = labelled_slices(cases, context)
    labelled = np.concatenate([lab[lab != UNLABELLED] for lab in labels])
    freq = np.bincount(labelled, minlength=_N_CLASSES).astype(float) / labelled.size
    class_w = np.where(freq > 0, np.median(freq[freq > 0]) / np.maximum(freq, 1e-12), 0.0)
    class_w_t = torch.tensor(class_w, dtype=torch.float32)
    voxel_w = _voxel_weights(labels, weighting, tumor_boundary_weight)
    tumor_slices = np.flatnonzero([(lab == TUMOR).any() for lab in labels])

    model = SegNet(variant, in_channels=2 * context + 1, width=options.width,
                   residual_channels=options.residual_channels)
    opt = adamw(model.parameters(), options.learning_rate)
    sched = one_cycle(opt, options.learning_rate, steps, pct_start=0.1)
    t0 = time.perf_counter()
    losses: list[float] = []
    model.train()
    for step in range(steps):
        idx = rng.integers(0, len(images), size=batch_size)
        if options.tumor_slice_fraction > 0 and tumor_slices.size:
            pick = rng.random(batch_size) < options.tumor_slice_fraction
            idx[pick] = tumor_slices[rng.integers(0, tumor_slices.size, size=int(pick.sum()))]
        x, y, w = crop_batch(images, labels, voxel_w, idx, crop, rng)
        loss = _loss(model(torch.from_numpy(x)), torch.from_numpy(y).long(), w, weighting, class_w_t,
                     tumor_boundary_weight)
        losses.append(optimise(opt, sched, loss))
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
        "learning_rate": options.learning_rate,
        "slices_used": len(images),
        "labelled_voxel_fraction": round(float(labelled.size / (len(images) * images[0][0].size)), 4),
        "class_weights": [round(float(v), 4) for v in class_w] if weighting == "frequency" else None,
        "tumor_boundary_weight": tumor_boundary_weight,
        "tumor_slice_fraction": options.tumor_slice_fraction,
        "training_seconds": round(time.perf_counter() - t0, 1),
        "final_loss": round(float(np.mean(losses[-50:])), 5),
        "parameters": parameter_count(model),
        "architecture": {"variant": variant, "in_channels": 2 * context + 1, "context": context,
                         "classes": _N_CLASSES, "width": options.width, "residual_channels": options.residual_channels},
    }
    return model, facts


def _loss(logits: Any, target: Any, w: np.ndarray, weighting: str, class_w: Any, tumor_boundary_weight: float) -> Any:
    """Weighted cross-entropy over the labelled voxels plus the soft Dice term."""
    import torch
    from torch.nn import functional as F

    mask = (target != UNLABELLED).float()
    target = target.clamp(max=_N_CLASSES - 1)
    logp = F.log_softmax(logits, 1).gather(1, target[:, None])[:, 0]
    if weighting == "frequency":
        weight = class_w[target]
    elif weighting == "probability":
        weight = (1.0 - logp.exp()) ** 2
    elif weighting == "distance":
        weight = torch.from_numpy(w)
    if tumor_boundary_weight > 0 and weighting != "distance":
        weight = weight * torch.from_numpy(w)
    loss = -(weight * logp * mask).sum() / mask.sum().clamp(min=1.0)
    return loss + soft_dice_loss(F.softmax(logits, 1), target, mask)


def _voxel_weights(labels: Sequence[np.ndarray], weighting: str, tumor_boundary_weight: float) -> list | None:
    """Per-slice voxel weights: the ``distance`` weighting's, times the tumour boundary's when asked for."""
    weights = [distance_weights(lab) for lab in labels] if weighting == "distance" else None
    if tumor_boundary_weight > 0:
        boundary = [tumor_boundary_weights(lab, tumor_boundary_weight) for lab in labels]
        weights = boundary if weights is None else [a * b for a, b in zip(weights, boundary)]
    return weights


def export_onnx(model: Any, path: Path, size: int = 128, channels: int = 1) -> None:
    """Export ``model`` to ONNX (opset 17, dynamic batch and spatial axes; ``channels`` fixed)."""
    _export_onnx(model, (1, channels, size, size), path, input_name=INPUT_NAME, output_names=[OUTPUT_NAME],
                 spatial_dynamic=True)
