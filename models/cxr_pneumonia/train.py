"""Train, export and evaluate the CXR pneumonia classifier on phantoms.

Seeds never overlap between the uses of phantoms:

* training: ``seed .. seed + phantoms - 1`` (below 1,000,000);
* held-out test: from :data:`TEST_SEED_BASE` (1,100,000) on;
* validation (choice of the decision threshold, Youden's J): from :data:`VAL_SEED_BASE`.

Phantom ``s`` has pneumonia when ``s`` is even, one nodule (a distractor) when
``s % 5 == 0``, and is MONOCHROME1 when ``(s // 2)`` is odd. Images go through the
node's own preprocessing (:func:`models.radiograph.to_model` on the DICOM
dataset). The ONNX graph has one input ``image`` and two outputs, ``probability`` and
``features`` (the last convolutional block); the linear head's weights and bias go into
``model.json`` for the numpy CAM.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm
from pydicom.uid import generate_uid

from models.radiograph import patient_side, to_model
from models.cxr_pneumonia.cam import zone_of_row
from models.cxr_pneumonia.preprocess import (
    FEATURES_NAME, INPUT_NAME, MODEL_SIZE, PROBABILITY_NAME, postprocess,
)
from models.phantoms.cxr import generate_cxr
from models.training import (
    adamw, dated_version, epoch_batches, one_cycle, onnx_session, optimise, output_folder, parameter_count, quiet,
    save_weights, seed_torch, write_json,
)
from models.training import export_onnx as _export_onnx

__all__ = ["TEST_SEED_BASE", "VAL_SEED_BASE", "EvalReport", "evaluate", "make_data", "phantom_for_seed", "roc_auc", "train"]

TEST_SEED_BASE = 1_100_000
VAL_SEED_BASE = 2_100_000
PHANTOM_SIZE = 256
MODEL_NAME = "cxr-pneumonia"


@dataclass
class EvalReport:
    """Held-out metrics of one ONNX model."""

    seed_range: list[int]
    n_images: int
    n_positive: int
    auc: float
    threshold: float
    sensitivity: float
    specificity: float
    side_accuracy: float
    zone_accuracy: float
    seconds: float


def phantom_for_seed(seed: int, size: int = PHANTOM_SIZE, styles: bool = False):
    """The phantom of ``seed`` (pneumonia, distractor nodule and photometric from the seed;
    ``styles``: with its randomised detector, processing and patient style)."""
    photometric = "MONOCHROME1" if (seed // 2) % 2 else "MONOCHROME2"
    return generate_cxr(seed, size=size, pneumonia=seed % 2 == 0, nodules=int(seed % 5 == 0), photometric=photometric,
                        styles=styles)


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUC needs positive and negative images")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def make_data(seeds: Sequence[int], log=None, styles: bool = False):
    """``(images, labels, truth)`` of the phantoms ``seeds`` on the model grid (``styles``: styled)."""
    images, labels, truth = [], [], []
    for i, seed in enumerate(tqdm(seeds, desc="phantoms", unit="phantom", leave=False, disable=None)):
        phantom = phantom_for_seed(seed, styles=styles)
        images.append(to_model(phantom.dataset, MODEL_SIZE)[0].astype(np.float16))
        labels.append(phantom.has_pneumonia)
        if phantom.has_pneumonia:
            rows, cols = np.nonzero(phantom.pneumonia_mask)
            r, c = float(rows.mean()), float(cols.mean())
            truth.append((patient_side(phantom.dataset, c), zone_of_row(r, phantom.image.shape[0]), phantom.dataset))
        else:
            truth.append((None, None, phantom.dataset))
        if log and (i + 1) % 100 == 0:
            log(f"  {i + 1}/{len(seeds)} phantoms")
    return np.stack(images), np.asarray(labels, dtype=bool), truth


def evaluate(model_path: Path, seeds: Sequence[int], *, head_weights: np.ndarray, threshold: float | None = None,
             data=None, styles: bool = False) -> EvalReport:
    """AUC, sensitivity/specificity at ``threshold`` (Youden-optimal when ``None``), heatmap location,
    on ``data`` or the phantoms of ``seeds`` (``styles``: with randomised styles)."""
    started = time.perf_counter()
    images, labels, truth = data if data is not None else make_data(seeds, styles=styles)
    session = onnx_session(model_path)
    probs, located = [], []
    for image, (side, zone, ds) in tqdm(list(zip(images, truth)), desc="evaluating", unit="image", leave=False,
                                        disable=None):
        out = session.run([PROBABILITY_NAME, FEATURES_NAME], {INPUT_NAME: image[None, None].astype(np.float32)})
        probs.append(float(out[0].reshape(-1)[0]))
        if side is not None:
            finding = postprocess([ds], {PROBABILITY_NAME: out[0], FEATURES_NAME: out[1]},
                                  head_weights=head_weights, threshold=0.5).images[0]
            located.append((finding.side == side, finding.zone == zone))
    probs_arr = np.asarray(probs)
    if threshold is None:
        candidates = np.unique(probs_arr)
        j = [((probs_arr >= t) & labels).sum() / labels.sum() + ((probs_arr < t) & ~labels).sum() / (~labels).sum()
             for t in candidates]
        threshold = float(candidates[int(np.argmax(j))])
    predicted = probs_arr >= threshold
    return EvalReport(
        seed_range=[min(seeds), max(seeds)],
        n_images=len(labels),
        n_positive=int(labels.sum()),
        auc=roc_auc(labels, probs_arr),
        threshold=float(threshold),
        sensitivity=float((predicted & labels).sum() / labels.sum()),
        specificity=float((~predicted & ~labels).sum() / (~labels).sum()),
        side_accuracy=float(np.mean([s for s, _ in located])) if located else 0.0,
        zone_accuracy=float(np.mean([z for _, z in located])) if located else 0.0,
        seconds=round(time.perf_counter() - started, 1),
    )


def export_onnx(net: Any, path: Path) -> None:
    """Export ``image -> probability, features`` (opset 17, dynamic batch axis)."""
    _export_onnx(net, (1, 1, MODEL_SIZE, MODEL_SIZE), path, input_name=INPUT_NAME,
                 output_names=[PROBABILITY_NAME, FEATURES_NAME])


def fit(images: np.ndarray, labels: np.ndarray, *, epochs: int, batch_size: int = 16, learning_rate: float = 3e-3,
        seed: int = 0, threads: int = 1, log: Callable[[str], None] | None = None):
    """Train the classifier (BCE on the logit); returns ``(net, final loss)``."""
    import torch
    import torch.nn.functional as F

    from models.cxr_pneumonia.net import PneumoniaNet

    rng = seed_torch(seed, threads)
    net = PneumoniaNet()
    optimiser = adamw(net.parameters(), learning_rate)
    steps = max(1, len(images) // batch_size)
    scheduler = one_cycle(optimiser, learning_rate, epochs * steps)
    loss_value = float("nan")
    for epoch in range(epochs):
        total = 0.0
        net.train()
        for idx in epoch_batches(rng, len(images), batch_size, steps):
            batch = images[idx].astype(np.float32)
            shift = rng.integers(-8, 9, 2)
            batch = np.roll(batch, tuple(shift), axis=(1, 2))
            x = torch.from_numpy(batch)[:, None]
            y = torch.from_numpy(labels[idx].astype(np.float32))[:, None]
            total += optimise(optimiser, scheduler, F.binary_cross_entropy_with_logits(net.logit(x), y))
        loss_value = total / steps
        if log:
            log(f"  epoch {epoch + 1}/{epochs} loss {loss_value:.4f}")
    net.eval()
    return net, loss_value


def train(phantoms: int, out_dir: Path, *, epochs: int, seed: int = 0, val_phantoms: int = 60,
          test_phantoms: int = 100, version: str | None = None, data=None, val_data=None, test_data=None,
          styled_phantoms: int = 0, log: Callable[[str], None] | None = None) -> dict:
    """Train on phantoms (or ``data`` = (images, labels)), choose the threshold, export, evaluate.

    ``styled_phantoms``: that many more training phantoms (the seeds after the plain ones) with
    randomised detector, processing and patient styles; the threshold is then chosen on the
    validation phantoms plain and styled (the same seeds twice), and the held-out phantoms are
    also evaluated styled (``test_styled``).

    Returns
    -------
    dict
        The ``model.json`` written beside ``model.onnx`` in ``out_dir``.
    """
    if seed + phantoms + styled_phantoms > TEST_SEED_BASE:
        raise ValueError("training seeds must stay below TEST_SEED_BASE")
    out_dir = output_folder(out_dir)
    log = quiet(log)
    t0 = time.perf_counter()
    train_seeds = list(range(seed, seed + phantoms))
    if data is None:
        log(f"generating {phantoms} training phantoms")
        images, labels, _ = make_data(train_seeds, log)
        if styled_phantoms:
            styled_seeds = list(range(seed + phantoms, seed + phantoms + styled_phantoms))
            log(f"generating {styled_phantoms} training phantoms with randomised styles")
            more_images, more_labels, _ = make_data(styled_seeds, log, styles=True)
            images, labels = np.concatenate([images, more_images]), np.concatenate([labels, more_labels])
            train_seeds += styled_seeds
    else:
        images, labels = data
    val_seeds = list(range(VAL_SEED_BASE, VAL_SEED_BASE + val_phantoms))
    test_seeds = list(range(TEST_SEED_BASE, TEST_SEED_BASE + test_phantoms))
    val = val_data if val_data is not None else (make_data(val_seeds) if val_phantoms else None)
    if val is not None and styled_phantoms and val_data is None:
        styled_val = make_data(val_seeds, styles=True)
        val = (np.concatenate([val[0], styled_val[0]]), np.concatenate([val[1], styled_val[1]]), val[2] + styled_val[2])
    test = test_data if test_data is not None else (make_data(test_seeds, log) if test_phantoms else None)
    generation_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    net, final_loss = fit(images, labels, epochs=epochs, seed=seed, log=log)
    training_seconds = time.perf_counter() - t1
    model_path = out_dir / "model.onnx"
    export_onnx(net, model_path)
    save_weights(net, out_dir / "model.pt")
    weight = net.head.weight.detach().numpy().reshape(-1)
    bias = float(net.head.bias.detach().numpy().reshape(-1)[0])
    threshold = 0.5
    metrics: dict[str, Any] = {}
    if val is not None:
        report = evaluate(model_path, val_seeds, head_weights=weight, data=val)
        threshold = report.threshold
        metrics["validation"] = asdict(report)
    if test is not None:
        metrics["test"] = asdict(evaluate(model_path, test_seeds, head_weights=weight, threshold=threshold, data=test))
        if styled_phantoms:
            metrics["test_styled"] = asdict(evaluate(model_path, test_seeds, head_weights=weight, threshold=threshold,
                                                     styles=True))
    meta = {
        "name": MODEL_NAME,
        "version": dated_version(version),
        "device_uid": generate_uid(prefix="2.25."),
        "channels": list(net.channels),
        "input": {"name": INPUT_NAME, "shape": ["N", 1, MODEL_SIZE, MODEL_SIZE]},
        "outputs": {
            PROBABILITY_NAME: ["N", 1],
            FEATURES_NAME: ["N", int(net.channels[-1]), MODEL_SIZE // 16, MODEL_SIZE // 16],
        },
        "head": {"weight": [round(float(w), 7) for w in weight], "bias": round(bias, 7)},
        "threshold": round(float(threshold), 6),
        "trained_on": {
            "data": "models.phantoms.cxr phantoms (even seed: pneumonia)" if data is None else "user data",
            "phantoms": int(len(images)),
            "seeds": [train_seeds[0], train_seeds[-1]] if data is None else [],
            "styled_phantoms": styled_phantoms,
            "phantom_size": PHANTOM_SIZE,
            "epochs": epochs,
            "generation_seconds": round(generation_seconds, 1),
            "training_seconds": round(training_seconds, 1),
            "final_loss": round(final_loss, 5),
            "parameters": parameter_count(net),
        },
        "metrics": metrics,
    }
    write_json(out_dir / "model.json", meta)
    return meta
