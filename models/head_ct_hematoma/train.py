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

import datetime as _dt
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm
from pydicom.uid import generate_uid

from models.head_ct_hematoma.findings import CLASS_NAMES, HEMATOMA
from models.head_ct_hematoma.preprocess import INPUT_NAME, OUTPUT_NAME, postprocess, preprocess, window
from models.phantoms.head_ct import generate_head_ct
from models.onnx_export import export_onnx as _export_onnx

__all__ = [
    "TEST_SEED_BASE",
    "VAL_SEED_BASE",
    "EvalReport",
    "TrainReport",
    "calibrate",
    "choose_min_patches",
    "evaluate",
    "series_hematoma_counts",
    "train",
]

TEST_SEED_BASE = 1_000_000
VAL_SEED_BASE = 2_000_000
MODEL_NAME = "head-ct-hematoma"
_CROP = 256
_GRID = 16


@dataclass
class EvalReport:
    """Held-out metrics of one ONNX model.

    ``per_class_recall`` is keyed by class name; ``series_counts`` holds, per series,
    ``(seed, truly positive, predicted hematoma patches)``.
    """

    seeds: list[int]
    min_patches: int
    patch_accuracy: float
    per_class_recall: dict[str, float]
    hematoma_patch_precision: float
    hematoma_patch_recall: float
    series_sensitivity: float
    series_specificity: float
    n_series: int
    n_positive: int
    n_negative: int
    seconds: float
    series_counts: list[tuple[int, bool, int]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The metrics without the per-series detail."""
        out = asdict(self)
        out.pop("series_counts")
        out.pop("seeds")
        out["seed_range"] = [min(self.seeds), max(self.seeds)] if self.seeds else []
        return out


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
    phantoms: int,
    out_dir: Path,
    *,
    epochs: int,
    seed: int = 0,
    slices: int = 24,
    val_phantoms: int = 60,
    test_phantoms: int = 40,
    batch_size: int = 8,
    learning_rate: float = 3e-3,
    extra_slices: int = 8,
    styled_phantoms: int = 0,
    threads: int = 2,
    version: str | None = None,
    log: Any = None,
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
    import torch

    from models.head_ct_hematoma.net import PatchNet

    if phantoms < 1 or epochs < 1:
        raise ValueError("phantoms and epochs must be >= 1")
    if seed < 0 or seed + phantoms + styled_phantoms > TEST_SEED_BASE:
        raise ValueError(f"training seeds must lie in 0..{TEST_SEED_BASE - 1}")
    say = log or (lambda _msg: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    t0 = time.perf_counter()
    hu_slices, label_slices = _training_slices(range(seed, seed + phantoms), slices, extra_slices, rng)
    if styled_phantoms:
        styled_seeds = range(seed + phantoms, seed + phantoms + styled_phantoms)
        more_hu, more_labels = _training_slices(styled_seeds, slices, extra_slices, rng, styles=True)
        hu_slices, label_slices = hu_slices + more_hu, label_slices + more_labels
    generation_s = time.perf_counter() - t0
    say(f"generated {phantoms + styled_phantoms} phantoms, {len(hu_slices)} slices in {generation_s:.1f}s")

    counts = np.bincount(np.concatenate([l.ravel() for l in label_slices]), minlength=len(CLASS_NAMES))
    freq = np.maximum(counts, 1) / counts.sum()
    weights = (1.0 / freq) / (1.0 / freq).sum() * len(CLASS_NAMES)

    model = PatchNet()
    steps_per_epoch = max(1, int(np.ceil(len(hu_slices) / batch_size)))
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=learning_rate, total_steps=epochs * steps_per_epoch, pct_start=0.15
    )
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    t1 = time.perf_counter()
    model.train()
    final_loss = float("nan")
    for epoch in range(epochs):
        order = rng.permutation(len(hu_slices))
        losses = []
        for step in range(steps_per_epoch):
            idx = order[step * batch_size:(step + 1) * batch_size]
            if idx.size == 0:
                continue
            x, y = _batch(hu_slices, label_slices, idx, rng)
            logits = model(torch.from_numpy(x))
            loss = loss_fn(logits, torch.from_numpy(y).long())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        final_loss = float(np.mean(losses)) if losses else final_loss
        say(f"epoch {epoch + 1}/{epochs} loss {final_loss:.4f} ({time.perf_counter() - t1:.0f}s)")
    training_s = time.perf_counter() - t1

    model_path = out_dir / "model.onnx"
    _export(model, model_path)
    torch.save(model.state_dict(), model_path.with_suffix(".pt"))
    n_params = int(sum(p.numel() for p in model.parameters()))
    meta = {
        "name": MODEL_NAME,
        "version": version or _dt.datetime.now(_dt.timezone.utc).strftime("phantom-%Y%m%d%H%M%S"),
        "device_uid": generate_uid(prefix=None),
        "min_patches": 1,
        "classes": list(CLASS_NAMES),
        "input": {"name": INPUT_NAME, "shape": ["N", 2, 512, 512]},
        "output": {"name": OUTPUT_NAME, "shape": ["N", len(CLASS_NAMES), 32, 32]},
        "trained_on": {
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
        },
        "metrics": {"validation": None, "test": None},
    }
    json_path = out_dir / "model.json"
    json_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    min_patches, validation, test = calibrate(
        model_path, json_path, val_phantoms=val_phantoms, test_phantoms=test_phantoms, slices=slices, log=say,
        styled=styled_phantoms > 0,
    )
    return TrainReport(
        model_path=model_path,
        json_path=json_path,
        phantoms=phantoms,
        training_seeds=(seed, seed + phantoms - 1),
        epochs=epochs,
        slices_used=len(hu_slices),
        parameters=n_params,
        class_weights=[float(w) for w in weights],
        final_loss=final_loss,
        generation_seconds=generation_s,
        training_seconds=training_s,
        min_patches=min_patches,
        validation=validation,
        test=test,
    )


def calibrate(
    model_path: Path,
    json_path: Path,
    *,
    val_phantoms: int = 60,
    test_phantoms: int = 40,
    slices: int = 24,
    log: Any = None,
    styled: bool = False,
) -> tuple[int, EvalReport | None, EvalReport | None]:
    """Choose ``min_patches`` on validation phantoms, evaluate held-out ones, update the JSON.

    ``styled``: the validation phantoms are drawn with and without randomised styles (the
    same seeds twice), and the held-out ones are also evaluated styled (``test_styled``).

    Validation seeds start at :data:`VAL_SEED_BASE`, held-out test seeds at
    :data:`TEST_SEED_BASE`; ``model.json``'s ``min_patches`` and ``metrics`` are
    rewritten, everything else is kept.

    Returns
    -------
    tuple
        ``(min_patches, validation report or None, test report or None)``.
    """
    say = log or (lambda _msg: None)
    min_patches = 1
    validation = None
    if val_phantoms > 0:
        val_seeds = list(range(VAL_SEED_BASE, VAL_SEED_BASE + val_phantoms))
        confusion = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), dtype=np.int64)
        t0 = time.perf_counter()
        counts = series_hematoma_counts(model_path, val_seeds, slices=slices, confusion=confusion)
        if styled:
            counts += series_hematoma_counts(model_path, val_seeds, slices=slices, confusion=confusion, styles=True)
        min_patches = choose_min_patches(counts)
        validation = _report(counts, min_patches, val_seeds * (2 if styled else 1), time.perf_counter() - t0,
                             confusion)
        say(f"min_patches {min_patches}: validation sensitivity "
            f"{validation.series_sensitivity:.3f} specificity {validation.series_specificity:.3f}")
    test = None
    if test_phantoms > 0:
        test = evaluate(model_path, range(TEST_SEED_BASE, TEST_SEED_BASE + test_phantoms),
                        min_patches, slices=slices)
        say(f"held-out: {json.dumps(test.summary())}")
    test_styled = None
    if test_phantoms > 0 and styled:
        test_styled = evaluate(model_path, range(TEST_SEED_BASE, TEST_SEED_BASE + test_phantoms),
                               min_patches, slices=slices, styles=True)
        say(f"held-out, styled: {json.dumps(test_styled.summary())}")
    meta = json.loads(Path(json_path).read_text(encoding="utf-8"))
    meta["min_patches"] = int(min_patches)
    meta["metrics"] = {
        "validation": validation.summary() if validation else None,
        "test": test.summary() if test else None,
        **({"test_styled": test_styled.summary()} if test_styled else {}),
    }
    Path(json_path).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return min_patches, validation, test


def series_hematoma_counts(
    model_path: Path,
    seeds: range | Sequence[int],
    *,
    slices: int = 24,
    batch_size: int = 8,
    threads: int = 2,
    confusion: np.ndarray | None = None,
    styles: bool = False,
) -> list[tuple[int, bool, int]]:
    """Run the ONNX model on the phantoms of ``seeds`` (``styles``: with their randomised
    scanner and patient styles).

    Returns ``(seed, truly positive, predicted hematoma patches)`` per series; adds the
    patch confusion matrix (rows: truth, columns: prediction) into ``confusion`` when
    given.
    """
    session = _session(model_path, threads)
    out = []
    for s in tqdm(seeds, desc="evaluating", unit="phantom", leave=False, disable=None):
        phantom = generate_head_ct(int(s), slices=slices, hematoma=int(s) % 2 == 0, styles=styles)
        image = preprocess(phantom.datasets)[INPUT_NAME]
        logits = np.concatenate([
            session.run([OUTPUT_NAME], {INPUT_NAME: image[i:i + batch_size]})[0]
            for i in range(0, len(image), batch_size)
        ])
        findings = postprocess({OUTPUT_NAME: logits}, 1)
        if confusion is not None:
            np.add.at(confusion, (phantom.patch_labels.ravel(), findings.patch_classes.ravel()), 1)
        out.append((int(s), phantom.has_hematoma, findings.candidate_patch_count))
    return out


def evaluate(
    model_path: Path,
    seeds: range | Sequence[int],
    min_patches: int,
    *,
    slices: int = 24,
    threads: int = 2,
    styles: bool = False,
) -> EvalReport:
    """Evaluate an ONNX model with onnxruntime (CPU) on held-out phantoms.

    Parameters
    ----------
    model_path:
        The ONNX graph.
    seeds:
        Phantom seeds; they must not overlap the training seeds (use
        :data:`TEST_SEED_BASE` and up). Even seeds have hematomas.
    min_patches:
        Series decision threshold (hematoma patches).
    slices:
        Slices per phantom.
    styles:
        Phantoms with randomised scanner and patient styles
        (:class:`~models.phantoms.head_ct.HeadCTStyle`).

    Returns
    -------
    EvalReport
    """
    t0 = time.perf_counter()
    confusion = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), dtype=np.int64)
    counts = series_hematoma_counts(model_path, seeds, slices=slices, threads=threads, confusion=confusion,
                                    styles=styles)
    return _report(counts, min_patches, [int(s) for s in seeds], time.perf_counter() - t0, confusion)


def choose_min_patches(counts: Sequence[tuple[int, bool, int]], max_k: int = 200) -> int:
    """Pick the series threshold that maximises sensitivity + specificity.

    Among equally good thresholds (a range ``lo..hi`` between the largest count of a
    negative series and the smallest of a positive one), the geometric middle
    ``round(sqrt(lo * hi))`` of the widest such range is taken: patch counts spread
    multiplicatively (small lesions have a few patches, large ones hundreds), so this
    leaves the same relative margin to false positives and to small lesions.
    """
    truth = np.array([c[1] for c in counts], dtype=bool)
    pred = np.array([c[2] for c in counts])
    ks = np.arange(1, min(max_k, int(pred.max(initial=0)) + 1) + 1)
    score = np.array([_youden(truth, pred >= k) for k in ks])
    best = np.flatnonzero(np.isclose(score, score.max()))
    runs = np.split(best, np.flatnonzero(np.diff(best) != 1) + 1)
    widest = max(runs, key=len)
    lo, hi = int(ks[widest[0]]), int(ks[widest[-1]])
    return int(round(float(np.sqrt(lo * hi))))


def _youden(truth: np.ndarray, called: np.ndarray) -> float:
    """Sensitivity + specificity (each 0 when undefined)."""
    sens = called[truth].mean() if truth.any() else 0.0
    spec = (~called[~truth]).mean() if (~truth).any() else 0.0
    return float(sens + spec)


def _report(
    counts: Sequence[tuple[int, bool, int]],
    min_patches: int,
    seeds: list[int],
    seconds: float,
    confusion: np.ndarray | None = None,
) -> EvalReport:
    """Assemble an :class:`EvalReport` from series counts and a patch confusion matrix."""
    truth = np.array([c[1] for c in counts], dtype=bool)
    called = np.array([c[2] for c in counts]) >= min_patches
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    sens = float(called[truth].mean()) if n_pos else float("nan")
    spec = float((~called[~truth]).mean()) if n_neg else float("nan")
    if confusion is None:
        acc, recall, prec, rec = float("nan"), {}, float("nan"), float("nan")
    else:
        total = confusion.sum()
        acc = float(np.trace(confusion) / total) if total else float("nan")
        rows = confusion.sum(axis=1)
        cols = confusion.sum(axis=0)
        recall = {
            name: (float(confusion[i, i] / rows[i]) if rows[i] else float("nan"))
            for i, name in enumerate(CLASS_NAMES)
        }
        prec = float(confusion[HEMATOMA, HEMATOMA] / cols[HEMATOMA]) if cols[HEMATOMA] else float("nan")
        rec = recall["hematoma"]
    return EvalReport(
        seeds=seeds,
        min_patches=int(min_patches),
        patch_accuracy=acc,
        per_class_recall=recall,
        hematoma_patch_precision=prec,
        hematoma_patch_recall=rec,
        series_sensitivity=sens,
        series_specificity=spec,
        n_series=len(counts),
        n_positive=n_pos,
        n_negative=n_neg,
        seconds=round(seconds, 1),
        series_counts=[(int(s), bool(t), int(c)) for s, t, c in counts],
    )


def _training_slices(
    seeds: range, slices: int, extra: int, rng: np.random.Generator, styles: bool = False,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """HU slices (int16) and patch labels sampled from the training phantoms."""
    hu_out, lab_out = [], []
    for s in seeds:
        phantom = generate_head_ct(int(s), slices=slices, hematoma=int(s) % 2 == 0, styles=styles)
        hem = (phantom.patch_labels == HEMATOMA).any(axis=(1, 2))
        others = np.flatnonzero(~hem)
        pick = list(np.flatnonzero(hem))
        pick += list(rng.choice(others, size=min(extra, others.size), replace=False))
        for k in sorted(pick):
            hu_out.append(phantom.hu[k].copy())
            lab_out.append(phantom.patch_labels[k].copy())
    return hu_out, lab_out


def _batch(
    hu: list[np.ndarray], labels: list[np.ndarray], idx: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Grid-aligned random crops (half near a hematoma patch when there is one), flipped."""
    grid = labels[0].shape[0]
    cells = min(_CROP // _GRID, grid)
    xs, ys = [], []
    for i in idx:
        lab = labels[i]
        hem = np.argwhere(lab == HEMATOMA)
        if hem.size and rng.random() < 0.5:
            r, c = hem[rng.integers(len(hem))]
            r0 = int(np.clip(r - rng.integers(2, cells - 2), 0, grid - cells))
            c0 = int(np.clip(c - rng.integers(2, cells - 2), 0, grid - cells))
        else:
            r0 = int(rng.integers(0, grid - cells + 1))
            c0 = int(rng.integers(0, grid - cells + 1))
        h = hu[i][r0 * _GRID:(r0 + cells) * _GRID, c0 * _GRID:(c0 + cells) * _GRID]
        y = lab[r0:r0 + cells, c0:c0 + cells]
        if rng.random() < 0.5:
            h, y = h[:, ::-1], y[:, ::-1]
        xs.append(h)
        ys.append(y)
    x = window(np.stack(xs))
    return np.ascontiguousarray(x), np.ascontiguousarray(np.stack(ys).astype(np.int64))


def _export(model: Any, path: Path) -> None:
    """Export ``model`` to ONNX (opset 17, dynamic batch) at ``path``."""
    _export_onnx(model, (1, 2, 512, 512), path, input_name=INPUT_NAME, output_names=[OUTPUT_NAME])


def _session(model_path: Path, threads: int) -> Any:
    """An onnxruntime CPU session."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
