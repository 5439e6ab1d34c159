"""Train, export and evaluate the head CT hematoma patch classifier on phantoms.

Seeds never overlap between the three uses of phantoms:

* training: ``seed .. seed + phantoms - 1`` (must stay below 1,000,000);
* held-out test: from :data:`TEST_SEED_BASE` (1,000,000) on;
* validation (choice of ``min_patches``): from :data:`VAL_SEED_BASE` (2,000,000) on.

A phantom with an even seed has hematomas, one with an odd seed has none, so every
seed range is half positive.

Training samples every slice with hematoma patches plus a few others from each
phantom, cuts 256x256 crops aligned to the 16-pixel patch grid (half of them centred
near a hematoma patch when the slice has one), flips them left-right at random, and
minimises cross-entropy weighted by the inverse class frequency of the training
patches. The ONNX export (opset 17, dynamic batch axis) reads ``image`` and writes
``logits``; the node only ever runs that graph.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from pydicom.uid import generate_uid

from models.head_ct_hematoma.evaluation import (
    TEST_SEED_BASE, VAL_SEED_BASE, EvalReport, calibrate, choose_min_patches, evaluate, series_hematoma_counts,
)
from models.head_ct_hematoma.findings import CLASS_NAMES
from models.head_ct_hematoma.preprocess import INPUT_NAME, OUTPUT_NAME
from models.head_ct_hematoma.training_data import crop_batch, training_slices
from models.training import (
    adamw, epoch_batches, export_onnx, one_cycle, optimise, output_folder, parameter_count, quiet, save_weights, seed_torch,
    timestamp_version, write_json,
)

__all__ = [
    "TEST_SEED_BASE",
    "VAL_SEED_BASE",
    "EvalReport",
    "TrainReport",
    "calibrate",
    "choose_min_patches",
    "class_weights",
    "evaluate",
    "fit",
    "series_hematoma_counts",
    "train",
]

MODEL_NAME = "head-ct-hematoma"


@dataclass
class TrainReport:
    """What :func:`train` did and measured."""

    model_path: Path
    json_path: Path
    phantoms: int
    training_seeds: tuple[int, int]
    epochs: int
    slices_used: int
    parameters: int
    class_weights: list[float]
    final_loss: float
    generation_seconds: float
    training_seconds: float
    min_patches: int
    validation: EvalReport | None
    test: EvalReport | None


def train(
    phantoms: int, out_dir: Path, *, epochs: int, seed: int = 0, slices: int = 24, val_phantoms: int = 60,
    test_phantoms: int = 40, batch_size: int = 8, learning_rate: float = 3e-3, extra_slices: int = 8,
    styled_phantoms: int = 0, threads: int = 2, version: str | None = None, log: Any = None,
) -> TrainReport:
    """Train on phantoms, export ONNX, choose ``min_patches`` and write ``model.json``.

    Parameters
    ----------
    phantoms:
        Training phantoms (seeds ``seed .. seed + phantoms - 1``; even seeds have
        hematomas).
    out_dir:
        Receives ``model.onnx`` and ``model.json``.
    epochs:
        Passes over the sampled training slices (one crop per slice per pass).
    seed:
        First training seed; also seeds torch.
    slices:
        Slices per phantom (training, validation and test).
    val_phantoms:
        Validation phantoms used to choose ``min_patches`` (0: keep 1).
    test_phantoms:
        Held-out phantoms evaluated after training (0: none); their metrics go into
        ``model.json``.
    batch_size, learning_rate:
        Optimiser settings (AdamW, one-cycle schedule).
    extra_slices:
        Slices without hematoma sampled per phantom besides every slice with one.
    styled_phantoms:
        That many more training phantoms (the seeds after the plain ones) with randomised
        scanner and patient styles (:class:`~models.phantoms.head_ct.HeadCTStyle`); the
        held-out phantoms are then evaluated plain and styled.
    threads:
        ``torch.set_num_threads``.
    version:
        Model version; defaults to a timestamp.
    log:
        Callable taking a string for progress lines, or ``None``.

    Returns
    -------
    TrainReport
    """
    if phantoms < 1 or epochs < 1:
        raise ValueError("phantoms and epochs must be >= 1")
    if seed < 0 or seed + phantoms + styled_phantoms > TEST_SEED_BASE:
        raise ValueError(f"training seeds must lie in 0..{TEST_SEED_BASE - 1}")
    say = quiet(log)
    out_dir = output_folder(out_dir)
    rng = seed_torch(seed, threads)

    t0 = time.perf_counter()
    hu_slices, label_slices = training_slices(range(seed, seed + phantoms), slices, extra_slices, rng)
    if styled_phantoms:
        styled_seeds = range(seed + phantoms, seed + phantoms + styled_phantoms)
        more_hu, more_labels = training_slices(styled_seeds, slices, extra_slices, rng, styles=True)
        hu_slices, label_slices = hu_slices + more_hu, label_slices + more_labels
    generation_s = time.perf_counter() - t0
    say(f"generated {phantoms + styled_phantoms} phantoms, {len(hu_slices)} slices in {generation_s:.1f}s")

    weights = class_weights(label_slices)
    t1 = time.perf_counter()
    model, final_loss = _fit(hu_slices, label_slices, weights, rng, epochs=epochs, batch_size=batch_size,
                             learning_rate=learning_rate, say=say)
    training_s = time.perf_counter() - t1

    model_path = out_dir / "model.onnx"
    _export(model, model_path)
    save_weights(model, model_path.with_suffix(".pt"))
    n_params = parameter_count(model)
    trained_on = {
        "data": "models.phantoms.head_ct phantoms (even seed: hematoma)",
        "phantoms": phantoms,
        "seeds": [seed, seed + phantoms - 1],
        **({"styled_seeds": [seed + phantoms, seed + phantoms + styled_phantoms - 1]} if styled_phantoms else {}),
        "slices_per_phantom": slices,
        "slices_used": len(hu_slices),
        "epochs": epochs,
        "class_weights": [round(float(w), 4) for w in weights],
        "parameters": n_params,
        "generation_seconds": round(generation_s, 1),
        "training_seconds": round(training_s, 1),
        "final_loss": round(final_loss, 5),
    }
    json_path = write_json(out_dir / "model.json", _model_json(version, trained_on))
    min_patches, validation, test = calibrate(
        model_path, json_path, val_phantoms=val_phantoms, test_phantoms=test_phantoms, slices=slices, log=say,
        styled=styled_phantoms > 0,
    )
    return TrainReport(
        model_path=model_path, json_path=json_path, phantoms=phantoms, training_seeds=(seed, seed + phantoms - 1),
        epochs=epochs, slices_used=len(hu_slices), parameters=n_params, class_weights=[float(w) for w in weights],
        final_loss=final_loss, generation_seconds=generation_s, training_seconds=training_s, min_patches=min_patches,
        validation=validation, test=test,
    )


def class_weights(label_slices: Sequence[np.ndarray]) -> np.ndarray:
    """Inverse class frequencies of the training patches, scaled to sum to the number of classes."""
    counts = np.bincount(np.concatenate([l.ravel() for l in label_slices]), minlength=len(CLASS_NAMES))
    freq = np.maximum(counts, 1) / counts.sum()
    return (1.0 / freq) / (1.0 / freq).sum() * len(CLASS_NAMES)


def _fit(
    hu_slices: list[np.ndarray], label_slices: list[np.ndarray], weights: np.ndarray, rng: np.random.Generator, *,
    epochs: int, batch_size: int, learning_rate: float, say: Callable[[str], None], init: Path | None = None,
) -> tuple[Any, float]:
    """Train a :class:`PatchNet` (weighted cross-entropy on crops), from ``init`` (a ``model.pt``)
    when given; ``(model, final epoch loss)``."""
    import torch

    from models.head_ct_hematoma.net import PatchNet

    model = PatchNet()
    if init is not None:
        model.load_state_dict(torch.load(init, map_location="cpu"))
    steps_per_epoch = max(1, int(np.ceil(len(hu_slices) / batch_size)))
    opt = adamw(model.parameters(), learning_rate)
    sched = one_cycle(opt, learning_rate, epochs * steps_per_epoch, pct_start=0.15)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    t1 = time.perf_counter()
    model.train()
    final_loss = float("nan")
    for epoch in range(epochs):
        losses = []
        for idx in epoch_batches(rng, len(hu_slices), batch_size, steps_per_epoch):
            if idx.size == 0:
                continue
            x, y = crop_batch(hu_slices, label_slices, idx, rng)
            losses.append(optimise(opt, sched, loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y).long())))
        final_loss = float(np.mean(losses)) if losses else final_loss
        say(f"epoch {epoch + 1}/{epochs} loss {final_loss:.4f} ({time.perf_counter() - t1:.0f}s)")
    return model, final_loss


fit = _fit
"""The fit loop, public for :mod:`.cross_family` (which trains on several families)."""


def _model_json(version: str | None, trained_on: dict[str, Any]) -> dict[str, Any]:
    """``model.json`` before calibration (``min_patches`` 1, no metrics yet)."""
    return {
        "name": MODEL_NAME,
        "version": timestamp_version(version),
        "device_uid": generate_uid(prefix=None),
        "min_patches": 1,
        "classes": list(CLASS_NAMES),
        "input": {"name": INPUT_NAME, "shape": ["N", 2, 512, 512]},
        "output": {"name": OUTPUT_NAME, "shape": ["N", len(CLASS_NAMES), 32, 32]},
        "trained_on": trained_on,
        "metrics": {"validation": None, "test": None},
    }


def _export(model: Any, path: Path) -> None:
    """Export ``model`` to ONNX (opset 17, dynamic batch) at ``path``."""
    export_onnx(model, (1, 2, 512, 512), path, input_name=INPUT_NAME, output_names=[OUTPUT_NAME])
