"""Train, export and evaluate the CXR nodule U-Net on phantoms (or the user's radiographs).

Seeds never overlap between the uses of phantoms:

* training: ``seed .. seed + phantoms - 1`` (below 1,000,000);
* held-out test: from :data:`TEST_SEED_BASE` (1,000,000) on;
* validation (choice of the score threshold at 0.2 FP/image): from :data:`VAL_SEED_BASE`.

Phantom ``s`` has ``s % 4`` nodules (a quarter are normal radiographs) and is written
MONOCHROME1 when ``(s // 4)`` is odd. Each phantom gives a pair: the radiograph and its
nodule-free twin.

Loss: soft Dice + binary cross-entropy on the radiograph (the classic U-Net of the
research), and, with ``nac_weight > 0``, the normal/abnormal contrastive (NAC) term on the
pair: the twin must give no response at all (mean of its 1 % highest probabilities,
pushed to 0), and outside the (dilated) nodules the two responses must agree (squared
difference), so that the network answers only to what the nodule adds.
"""
from __future__ import annotations

import datetime as _dt
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm
from pydicom.uid import generate_uid
from scipy import ndimage

from models.cxr_nodule.froc import FROC, froc, render_froc_png
from models.cxr_nodule.preprocess import INPUT_NAME, MODEL_SIZE, OUTPUT_NAME, model_detections, model_input
from models.cxr_nodule.radiograph import resample
from models.phantoms.cxr import generate_cxr
from models.onnx_export import export_onnx as _export_onnx

__all__ = [
    "PHANTOM_SIZE",
    "TEST_SEED_BASE",
    "VAL_SEED_BASE",
    "EvalReport",
    "Sample",
    "evaluate",
    "export_onnx",
    "make_sample",
    "phantom_for_seed",
    "train",
]

TEST_SEED_BASE = 1_000_000
VAL_SEED_BASE = 2_000_000
PHANTOM_SIZE = 512
MODEL_NAME = "cxr-nodule"
CANDIDATE_THRESHOLD = 0.2
MIN_RADIUS_MODEL_PX = 2.0
_CROP = 96


@dataclass
class Sample:
    """One training/evaluation pair on the model grid.

    ``truths``: ``(row, col, radius)`` per nodule in model pixels (radius at least
    :data:`MIN_RADIUS_MODEL_PX`).
    """

    image: np.ndarray
    twin: np.ndarray
    mask: np.ndarray
    truths: list[tuple[float, float, float]]
    diameters_mm: list[float] = field(default_factory=list)
    has_twin: bool = True


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


def nodule_count(seed: int) -> int:
    return seed % 4


def phantom_for_seed(seed: int, size: int = PHANTOM_SIZE):
    """The phantom of ``seed`` (nodule count and photometric from the seed)."""
    photometric = "MONOCHROME1" if (seed // 4) % 2 else "MONOCHROME2"
    return generate_cxr(seed, size=size, nodules=nodule_count(seed), photometric=photometric)


def make_sample(phantom, size: int = MODEL_SIZE) -> Sample:
    """Resample a phantom's pair and masks to the model grid (shared normalisation)."""
    image, geometry = resample(phantom.image, size)
    twin, _ = resample(phantom.clean, size)
    low, high = np.percentile(image, (1.0, 99.0))
    scale = max(float(high - low), 1e-6)
    mask, _ = resample(phantom.nodule_mask.astype(np.float32), size)
    truths = []
    for n in phantom.nodules:
        r, c = geometry.to_model(n.row, n.col)
        truths.append((r, c, max(n.radius_px * geometry.scale, MIN_RADIUS_MODEL_PX)))
    return Sample(
        np.clip((image - low) / scale, 0, 1).astype(np.float16),
        np.clip((twin - low) / scale, 0, 1).astype(np.float16),
        mask >= 0.35,
        truths,
        [n.diameter_mm for n in phantom.nodules],
    )


def make_samples(seeds: Sequence[int], log: Callable[[str], None] | None = None) -> list[Sample]:
    out = []
    for i, seed in enumerate(tqdm(seeds, desc="phantoms", unit="phantom", leave=False, disable=None)):
        out.append(make_sample(phantom_for_seed(seed)))
        if log and (i + 1) % 100 == 0:
            log(f"  {i + 1}/{len(seeds)} phantoms")
    return out


def evaluate(
    model_path: Path, seeds: Sequence[int] | None = None, *, samples: Sequence[Sample] | None = None,
    froc_png: Path | None = None,
) -> tuple[EvalReport, FROC]:
    """FROC of ``model_path`` on phantoms ``seeds`` (or given samples)."""
    import onnxruntime as ort

    started = time.perf_counter()
    if samples is None:
        samples = make_samples(list(seeds or []))
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    detections, truths = [], []
    truths_15 = []
    ratios = []
    for sample in tqdm(samples, desc="evaluating", unit="image", leave=False, disable=None):
        (logits,) = session.run([OUTPUT_NAME], {INPUT_NAME: model_input(sample.image)[None]})
        found = model_detections(logits[0], CANDIDATE_THRESHOLD)
        detections.append([(r, c, s) for r, c, s, _ in found])
        truths.append(sample.truths)
        for (tr, tc, radius), diameter_mm in zip(sample.truths, sample.diameters_mm):
            hits = [m for r, c, s, m in found if np.hypot(r - tr, c - tc) <= radius]
            if hits and radius > MIN_RADIUS_MODEL_PX:
                ratios.append(2 * np.sqrt(hits[0].sum() / np.pi) / (2 * radius))
        truths_15.append([t for t, d in zip(sample.truths, sample.diameters_mm) if d >= 15.0])
    curve = froc(detections, truths)
    curve_15 = froc(detections, truths_15)
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
    )
    return report, curve


def export_onnx(net: Any, path: Path) -> None:
    """Export ``image -> logits`` (opset 17, dynamic batch axis)."""
    _export_onnx(net, (1, 2, MODEL_SIZE, MODEL_SIZE), path, input_name=INPUT_NAME, output_names=[OUTPUT_NAME])


def fit(
    samples: Sequence[Sample],
    *,
    epochs: int,
    nac_weight: float = 0.0,
    batch_size: int = 8,
    learning_rate: float = 2e-3,
    channels: tuple[int, ...] = (8, 16, 32, 48),
    seed: int = 0,
    threads: int = 1,
    log: Callable[[str], None] | None = None,
):
    """Train a U-Net on ``samples``; returns ``(net, final loss)``."""
    import torch
    import torch.nn.functional as F

    from models.cxr_nodule.net import NoduleUNet

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = NoduleUNet(channels)
    optimiser = torch.optim.Adam(net.parameters(), lr=learning_rate)
    steps_per_epoch = max(1, len(samples) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, learning_rate, total_steps=epochs * steps_per_epoch)
    loss_value = float("nan")
    for epoch in range(epochs):
        order = rng.permutation(len(samples))
        total = 0.0
        net.train()
        for step in range(steps_per_epoch):
            batch = [samples[i] for i in order[step * batch_size:(step + 1) * batch_size]]
            img, twin, mask = _crops(batch, rng)
            paired = torch.tensor([float(s.has_twin) for s in batch])
            x = torch.from_numpy(img)
            y = torch.from_numpy(mask)[:, None]
            logit_abn = net(x)
            if nac_weight > 0:
                # a separate pass: with one batch of near-identical pairs, batch
                # normalisation could tell the halves apart by their statistics
                logit_twin = net(torch.from_numpy(twin))
            prob = torch.sigmoid(logit_abn)
            dice = 1 - (2 * (prob * y).sum() + 1) / (prob.sum() + y.sum() + 1)
            bce = F.binary_cross_entropy_with_logits(logit_abn, y, pos_weight=torch.tensor(5.0))
            loss = dice + bce
            if nac_weight > 0:
                p_twin = torch.sigmoid(logit_twin)
                k = max(1, p_twin[0].numel() // 100)
                top = p_twin.flatten(1).topk(k, dim=1).values.mean(dim=1)
                outside = (1.0 - torch.from_numpy(_dilate(mask))[:, None]) * paired[:, None, None, None]
                consistency = (((prob - p_twin) ** 2) * outside).sum() / outside.sum().clamp(min=1)
                loss = loss + nac_weight * ((top * paired).sum() / paired.sum().clamp(min=1) + consistency)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += float(loss.detach())
        loss_value = total / steps_per_epoch
        if log:
            log(f"  epoch {epoch + 1}/{epochs} loss {loss_value:.4f}")
    net.eval()
    return net, loss_value


def train(
    phantoms: int,
    out_dir: Path,
    *,
    epochs: int,
    seed: int = 0,
    nac_weight: float = 0.0,
    val_phantoms: int = 60,
    test_phantoms: int = 100,
    compare_without_nac: bool = False,
    version: str | None = None,
    samples: Sequence[Sample] | None = None,
    val_samples: Sequence[Sample] | None = None,
    test_samples: Sequence[Sample] | None = None,
    user_data: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Train on phantoms (or ``samples``), pick the 0.2 FP/image threshold, export, evaluate.

    ``samples`` with ``user_data=True`` are the user's radiographs (:mod:`.data`); the
    validation and test phantoms are still generated unless given or set to 0.

    Returns
    -------
    dict
        The ``model.json`` written beside ``model.onnx`` in ``out_dir``.
    """
    import torch

    if seed + phantoms > TEST_SEED_BASE:
        raise ValueError("training seeds must stay below TEST_SEED_BASE")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or (lambda _m: None)
    t0 = time.perf_counter()
    train_seeds = list(range(seed, seed + phantoms))
    from_phantoms = not user_data
    if samples is None:
        log(f"generating {phantoms} training phantoms")
        samples = make_samples(train_seeds, log)
    val = val_samples if val_samples is not None else (
        make_samples(range(VAL_SEED_BASE, VAL_SEED_BASE + val_phantoms)) if val_phantoms else [])
    test_seeds = list(range(TEST_SEED_BASE, TEST_SEED_BASE + test_phantoms))
    test = test_samples if test_samples is not None else (make_samples(test_seeds, log) if test_phantoms else [])
    generation_seconds = time.perf_counter() - t0

    channels = (8, 16, 32, 48)
    comparison: dict[str, Any] = {}
    if compare_without_nac and test:
        log("training without the NAC term (comparison)")
        t1 = time.perf_counter()
        plain, _ = fit(samples, epochs=epochs, nac_weight=0.0, channels=channels, seed=seed, log=log)
        plain_path = out_dir / "without_nac.onnx"
        export_onnx(plain, plain_path)
        report, _ = evaluate(plain_path, test_seeds, samples=test)
        comparison["without_nac"] = {**asdict(report), "training_seconds": round(time.perf_counter() - t1, 1)}
        plain_path.unlink()
    log(f"training with nac_weight={nac_weight}")
    t1 = time.perf_counter()
    net, final_loss = fit(samples, epochs=epochs, nac_weight=nac_weight, channels=channels, seed=seed, log=log)
    training_seconds = time.perf_counter() - t1
    model_path = out_dir / "model.onnx"
    export_onnx(net, model_path)
    torch.save(net.state_dict(), out_dir / "model.pt")

    score_threshold = 0.5
    metrics: dict[str, Any] = {}
    if val:
        val_report, val_curve = evaluate(model_path, list(range(VAL_SEED_BASE, VAL_SEED_BASE + val_phantoms)), samples=val)
        score_threshold = float(min(max(val_curve.threshold_at(0.2), CANDIDATE_THRESHOLD), 0.99))
        metrics["validation"] = asdict(val_report)
    if test:
        test_report, curve = evaluate(model_path, test_seeds, samples=test, froc_png=out_dir / "froc.png")
        metrics["test"] = asdict(test_report)
        if comparison:
            comparison["with_nac"] = {**asdict(test_report), "training_seconds": round(training_seconds, 1)}
    meta = {
        "name": MODEL_NAME,
        "version": version or f"0.1.0-phantom+{_dt.date.today():%Y%m%d}",
        "device_uid": generate_uid(prefix="2.25."),
        "channels": list(channels),
        "input": {"name": INPUT_NAME, "shape": ["N", 2, MODEL_SIZE, MODEL_SIZE]},
        "output": {"name": OUTPUT_NAME, "shape": ["N", 1, MODEL_SIZE, MODEL_SIZE]},
        "candidate_threshold": CANDIDATE_THRESHOLD,
        "score_threshold": round(score_threshold, 4),
        "trained_on": {
            "data": "models.phantoms.cxr phantoms (seed % 4 nodules)" if from_phantoms else "user data",
            "phantoms": len(samples),
            "seeds": [train_seeds[0], train_seeds[-1]] if from_phantoms and train_seeds else [],
            "phantom_size": PHANTOM_SIZE,
            "epochs": epochs,
            "nac_weight": nac_weight,
            "generation_seconds": round(generation_seconds, 1),
            "training_seconds": round(training_seconds, 1),
            "final_loss": round(final_loss, 5),
            "parameters": int(sum(p.numel() for p in net.parameters())),
        },
        "metrics": metrics,
    }
    if comparison:
        meta["nac_comparison"] = comparison
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _crops(batch: Sequence[Sample], rng: np.random.Generator):
    imgs, twins, masks = [], [], []
    for s in batch:
        size = s.image.shape[0]
        if s.truths and rng.random() < 0.8:
            r, c, _ = s.truths[int(rng.integers(len(s.truths)))]
            r0 = int(np.clip(r - _CROP / 2 + rng.integers(-40, 41), 0, size - _CROP))
            c0 = int(np.clip(c - _CROP / 2 + rng.integers(-40, 41), 0, size - _CROP))
        else:
            r0 = int(rng.integers(size // 8, size - _CROP - size // 8))
            c0 = int(rng.integers(0, size - _CROP + 1))
        window = (slice(r0, r0 + _CROP), slice(c0, c0 + _CROP))
        flip = rng.random() < 0.5
        for target, source in ((imgs, model_input(s.image)), (twins, model_input(s.twin)), (masks, s.mask)):
            crop = source[(Ellipsis, *window)]
            target.append(crop[..., ::-1] if flip else crop)
    return (
        np.ascontiguousarray(np.stack(imgs), dtype=np.float32),
        np.ascontiguousarray(np.stack(twins), dtype=np.float32),
        np.ascontiguousarray(np.stack(masks), dtype=np.float32),
    )


def _dilate(mask: np.ndarray) -> np.ndarray:
    return ndimage.binary_dilation(mask > 0.5, iterations=3, axes=(1, 2)).astype(np.float32)
