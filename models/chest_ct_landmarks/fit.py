"""Fitting the three chest CT landmark classifiers: balanced slice batches, per-classifier optimisers, checkpoints."""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from models.chest_ct_landmarks.augment import augment as augment_batch
from models.chest_ct_landmarks.datasets import LabelledSeries
from models.chest_ct_landmarks.findings import LANDMARKS
from models.chest_ct_landmarks.preprocess import AIRWAY_INPUT, AIRWAY_MATRIX, INPUT_NAME, MATRIX, stack_context
from models.chest_ct_landmarks.progress import Progress
from models.training import adamw, one_cycle, optimise, quiet
from models.training import export_onnx as _export_onnx

__all__ = ["DEFAULT_REPEATS", "export_onnx", "fit", "slice_batch"]

DEFAULT_REPEATS: dict[str, int] = {"apex": 1, "carina": 2, "diaphragm": 1}
"""Batches per training step for each classifier."""
_HARD_RANGE = 6


def fit(
    model: Any, data: Sequence[LabelledSeries], ckpt_path: Path, rng: np.random.Generator, *, seed: int, arch: str,
    epochs: int, steps_per_epoch: int, batch_size: int, learning_rate: float, fp_weight: float,
    hard_fraction: float, reps: Mapping[str, int], augment: str, resume: bool,
    log: Callable[[str], None] | None,
) -> dict[str, float]:
    """Train each classifier of ``model`` on its own batches, a checkpoint per epoch; the final loss per landmark.

    With ``resume``, continue from ``ckpt_path`` (weights, optimiser state, epoch count), the
    learning-rate schedule fast-forwarded to where the checkpoint was.
    """
    import torch

    from models.chest_ct_landmarks.net import SEPARATE_INPUT_VIEWS

    say = quiet(log)
    opts = {n: adamw(model.classifiers[n].parameters(), learning_rate) for n in LANDMARKS}
    total = epochs * steps_per_epoch
    scheds = {n: one_cycle(o, learning_rate, total * reps[n], pct_start=0.2) for n, o in opts.items()}
    start_epoch = 0
    if resume and ckpt_path.exists():
        start_epoch = _resume(model, opts, scheds, ckpt_path, epochs, steps_per_epoch, reps)
        rng = np.random.default_rng([seed, start_epoch])
        say(f"resumed from {ckpt_path} after epoch {start_epoch}")
    t1 = time.perf_counter()
    final: dict[str, float] = {n: float("nan") for n in LANDMARKS}
    model.train()
    for epoch in range(start_epoch, epochs):
        losses: dict[str, list[float]] = {n: [] for n in LANDMARKS}
        bar = Progress(steps_per_epoch, f"epoch {epoch + 1}/{epochs}", log is not None)
        for step in range(steps_per_epoch):
            for name in (n for n in LANDMARKS for _ in range(reps[n])):
                x, y = slice_batch(data, name, batch_size, hard_fraction, rng,
                                   airway=model.views[name] in SEPARATE_INPUT_VIEWS)
                xt = augment_batch(torch.from_numpy(x), rng, mode=augment)
                logits = model.classifiers[name](xt).reshape(-1)
                target = torch.from_numpy(y)
                weight = torch.where(target > 0.5, torch.tensor(1.0), torch.tensor(float(fp_weight)))
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, weight=weight)
                losses[name].append(optimise(opts[name], scheds[name], loss))
            bar.update(step + 1, " ".join(f"{n} {np.mean(losses[n]):.3f}" for n in LANDMARKS))
        bar.close()
        final = {n: float(np.mean(v)) for n, v in losses.items()}
        torch.save({
            "model": model.state_dict(),
            "optimizers": {n: o.state_dict() for n, o in opts.items()},
            "schedulers": {n: s.state_dict() for n, s in scheds.items()},
            "epoch": epoch + 1,
            "arch": arch,
        }, ckpt_path)
        say(f"epoch {epoch + 1}/{epochs} loss " + ", ".join(f"{n} {v:.4f}" for n, v in final.items())
            + f" ({time.perf_counter() - t1:.0f}s)")
    return final


def _resume(model: Any, opts: Mapping[str, Any], scheds: Mapping[str, Any], ckpt_path: Path, epochs: int,
            steps_per_epoch: int, reps: Mapping[str, int]) -> int:
    """Load the checkpoint into ``model`` and ``opts``, fast-forward ``scheds``; the epochs it had done."""
    import torch

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    model.load_state_dict(ckpt["model"])
    start_epoch = int(ckpt["epoch"])
    if start_epoch > epochs:
        raise ValueError(f"{ckpt_path} is after epoch {start_epoch}; ask for at least that many epochs")
    for n in LANDMARKS:
        opts[n].load_state_dict(ckpt["optimizers"][n])
        # The schedule of this run (its epochs), fast-forwarded to where the checkpoint was.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(start_epoch * steps_per_epoch * reps[n]):
                scheds[n].step()
    return start_epoch


def slice_batch(
    data: Sequence[LabelledSeries], name: str, batch_size: int, hard_fraction: float, rng: np.random.Generator,
    airway: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Half oversampled positives, half negatives (a share of them hard), context stacked; from
    the airway squares instead of the 128x128 volumes with ``airway``."""
    n_pos = batch_size // 2
    n_neg = batch_size - n_pos
    picks: list[tuple[int, int, float]] = []
    for _ in range(n_pos):
        s = int(rng.integers(len(data)))
        picks.append((s, data[s].truth[name], 1.0))
    for j in range(n_neg):
        s = int(rng.integers(len(data)))
        n, t = len(data[s].volume), data[s].truth[name]
        if j < round(n_neg * hard_fraction):
            k = t + int(rng.choice([-1, 1])) * int(rng.integers(1, _HARD_RANGE + 1))
            k = int(np.clip(k, 0, n - 1))
            if k == t:
                k = t + 1 if t + 1 < n else t - 1
        else:
            k = int(rng.integers(n - 1))
            k = k + 1 if k >= t else k
        picks.append((s, k, 0.0))
    x = np.stack([stack_context(data[s].airway if airway else data[s].volume, data[s].offset, [k])[0]
                  for s, k, _ in picks]).astype(np.float32)
    y = np.array([label for _, _, label in picks], dtype=np.float32)
    return x, y


def export_onnx(model: Any, path: Path) -> None:
    """Export a :class:`LandmarkNet` to ONNX (opset 17, dynamic batch axis; the input ``airway``
    too when a classifier reads it)."""
    extra = {AIRWAY_INPUT: (1, 3, AIRWAY_MATRIX, AIRWAY_MATRIX)} if model.uses_airway else None
    _export_onnx(model, (1, 3, MATRIX, MATRIX), path, input_name=INPUT_NAME, output_names=list(LANDMARKS),
                 extra_inputs=extra)
