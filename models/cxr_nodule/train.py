"""Train, export and evaluate the CXR nodule U-Net on phantoms (or the user's radiographs).

Seeds never overlap between the uses of phantoms:

* training: ``seed .. seed + phantoms - 1`` (below 1,000,000);
* held-out test: from :data:`TEST_SEED_BASE` (1,000,000) on;
* validation (choice of the score threshold at 0.2 FP/image): from :data:`VAL_SEED_BASE`.

Phantom ``s`` has ``s % 4`` nodules (a quarter are normal radiographs) and is written
MONOCHROME1 when ``(s // 4)`` is odd. Each phantom gives a pair: the radiograph and its
nodule-free twin.

Phantoms are generated at 512 x 512; ``cache_dir`` keeps them (:func:`cached_phantom`),
so that later runs and evaluations skip generation. The model's input size (256 or 512)
is a training option written to ``model.json``; the pack follows it.

Training crops: ``nodule_crops`` of them around a nodule, the others anywhere on the
image (neck and shoulders included: a model that never saw them answers there with
confident false positives). Optionally a share of them get nodules of other radiographs
embedded (``implant_crops``, :mod:`.implants`) or are centred on the network's own false
positives (``hard_negative_crops``); ``fine_phantoms`` adds phantoms made on finer detectors.

Loss: soft Dice + binary cross-entropy on the radiograph (the classic U-Net of the
research), the cross-entropy of small nodules' pixels optionally up-weighted
(``small_boost``), and, with ``nac_weight > 0``, the normal/abnormal contrastive (NAC) term
on the pair: the twin must give no response at all (mean of its 1 % highest
probabilities, pushed to 0), and outside the (dilated) nodules the two responses must
agree (squared difference), so that the network answers only to what the nodule adds.
Switched on from the first step, that term flattens the output before the network has
learnt what a nodule is (see the card); ``nac_warmup`` epochs without it avoid that.
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

from models.cxr_nodule.froc import FROC, froc, matched_nodule, nodule_scores, render_froc_png
from models.cxr_nodule.preprocess import INPUT_NAME, MODEL_SIZE, OUTPUT_NAME, detail_sigma, model_detections, model_input
from models.cxr_nodule.radiograph import resample
from models.cxr_nodule.implants import Implant, embed, nodule_bank, placeable_mask
from models.phantoms.cxr import FIELD_MM, generate_cxr
from models.onnx_export import export_onnx as _export_onnx

__all__ = [
    "FINE_SIZES",
    "PHANTOM_SIZE",
    "TEST_SEED_BASE",
    "VAL_SEED_BASE",
    "EvalReport",
    "Sample",
    "crop_window",
    "evaluate",
    "export_onnx",
    "implanted_input",
    "make_sample",
    "make_samples",
    "mine_false_positives",
    "phantom_for_seed",
    "prepared_inputs",
    "train",
]

TEST_SEED_BASE = 1_000_000
VAL_SEED_BASE = 2_000_000
PHANTOM_SIZE = 512
FINE_SIZES = (1024, 2048)
"""Detector sizes of the ``fine_phantoms`` of :func:`train` (0.42 and 0.21 mm pixels)."""
MODEL_NAME = "cxr-nodule"
CANDIDATE_THRESHOLD = 0.2
MIN_RADIUS_MODEL_PX = 2.0
"""Smallest hit radius, in pixels of a 256 x 256 model grid (3.4 mm on the 430 mm field);
:func:`min_radius` scales it to other input sizes so that the criterion stays the same in mm."""
_CROP = 96
SIZE_BINS = (("<10 mm", 0.0, 10.0), ("10-15 mm", 10.0, 15.0), ("15-20 mm", 15.0, 20.0), (">=20 mm", 20.0, 1e9))


def min_radius(size: int) -> float:
    """Smallest hit radius in model pixels for a ``size`` x ``size`` input (same mm at every size)."""
    return MIN_RADIUS_MODEL_PX * size / MODEL_SIZE


@dataclass
class Sample:
    """One training/evaluation pair on the model grid.

    ``truths``: ``(row, col, radius)`` per nodule in model pixels (radius at least
    :func:`min_radius` of the grid). ``value_scale``: stored values per unit of the normalised
    ``image``; ``placeable``: where a nodule may be embedded in training
    (:func:`~models.cxr_nodule.implants.placeable_mask`; ``None``: nowhere).
    """

    image: np.ndarray
    twin: np.ndarray
    mask: np.ndarray
    truths: list[tuple[float, float, float]]
    diameters_mm: list[float] = field(default_factory=list)
    has_twin: bool = True
    value_scale: float = 1.0
    placeable: np.ndarray | None = None


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


def nodule_count(seed: int) -> int:
    return seed % 4


def phantom_for_seed(seed: int, size: int = PHANTOM_SIZE, styles: bool = False):
    """The phantom of ``seed`` (nodule count and photometric from the seed; ``styles``: with
    its randomised detector, processing and patient style)."""
    photometric = "MONOCHROME1" if (seed // 4) % 2 else "MONOCHROME2"
    return generate_cxr(seed, size=size, nodules=nodule_count(seed), photometric=photometric, styles=styles)


def make_sample(phantom, size: int = MODEL_SIZE) -> Sample:
    """Resample a phantom's pair and masks to the model grid (shared normalisation)."""
    image, geometry = resample(phantom.image, size)
    twin, _ = resample(phantom.clean, size)
    low, high = np.percentile(image, (1.0, 99.0))
    scale = max(float(high - low), 1e-6)
    mask, _ = resample(phantom.nodule_mask.astype(np.float32), size)
    lungs, _ = resample(phantom.lung_mask.astype(np.float32), size)
    truths = []
    for n in phantom.nodules:
        r, c = geometry.to_model(n.row, n.col)
        truths.append((r, c, max(n.radius_px * geometry.scale, min_radius(size))))
    return Sample(
        np.clip((image - low) / scale, 0, 1).astype(np.float16),
        np.clip((twin - low) / scale, 0, 1).astype(np.float16),
        mask >= 0.35,
        truths,
        [n.diameter_mm for n in phantom.nodules],
        value_scale=scale,
        placeable=placeable_mask(lungs >= 0.5, mask >= 0.35, FIELD_MM / phantom.image.shape[0] / geometry.scale),
    )


@dataclass
class CachedPhantom:
    """What :func:`make_sample` reads of a phantom (image, twin, nodule and lung masks, truths)."""

    image: np.ndarray
    clean: np.ndarray
    nodule_mask: np.ndarray
    nodules: list
    lung_mask: np.ndarray


def cached_phantom(seed: int, cache_dir: Path | None = None, styles: bool = False):
    """The phantom of ``seed``, read from / written to ``cache_dir`` (``cxr-<seed>-512.npz``,
    ``cxr-s-<seed>-512.npz`` with ``styles``).

    Generating one 512 x 512 phantom takes 0.2-1 s on a shared CPU; the cache keeps the arrays that
    :func:`make_sample` needs, so later runs (other model sizes too) skip generation.
    """
    from models.phantoms.cxr import Nodule

    if cache_dir is None:
        return phantom_for_seed(seed, styles=styles)
    path = Path(cache_dir) / f"cxr-{'s-' if styles else ''}{seed}-{PHANTOM_SIZE}.npz"
    if path.exists():
        with np.load(path) as z:
            if "lung_mask" in z:   # else a cache written before lung masks were kept: made again
                nodules = [Nodule(*map(float, row)) for row in z["nodules"]]
                return CachedPhantom(z["image"], z["clean"], z["nodule_mask"], nodules, z["lung_mask"])
    phantom = phantom_for_seed(seed, styles=styles)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.array([[n.row, n.col, n.diameter_mm, n.radius_px, n.contrast] for n in phantom.nodules],
                    dtype=np.float64).reshape(-1, 5)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, image=phantom.image, clean=phantom.clean, nodule_mask=phantom.nodule_mask, nodules=rows,
             lung_mask=phantom.lung_mask)
    tmp.replace(path)
    return phantom


def make_samples(
    seeds: Sequence[int], log: Callable[[str], None] | None = None, *, size: int = MODEL_SIZE,
    cache_dir: Path | None = None, phantom_size: int = PHANTOM_SIZE, styles: bool = False,
) -> list[Sample]:
    """Samples on the ``size`` grid of the phantoms ``seeds`` made at ``phantom_size`` (only
    those at :data:`PHANTOM_SIZE` are cached); ``styles``: with randomised styles."""
    out = []
    for i, seed in enumerate(tqdm(seeds, desc="phantoms", unit="phantom", leave=False, disable=None)):
        phantom = (cached_phantom(seed, cache_dir, styles) if phantom_size == PHANTOM_SIZE
                   else phantom_for_seed(seed, phantom_size, styles))
        out.append(make_sample(phantom, size))
        if log and (i + 1) % 100 == 0:
            log(f"  {i + 1}/{len(seeds)} phantoms")
    return out


def evaluate(
    model_path: Path, seeds: Sequence[int] | None = None, *, samples: Sequence[Sample] | None = None,
    froc_png: Path | None = None, score_threshold: float | None = None, detector_size: int = PHANTOM_SIZE,
    styles: bool = False,
) -> tuple[EvalReport, FROC]:
    """FROC of ``model_path`` on phantoms ``seeds`` (or given samples, on the model's grid).

    Phantoms are resampled to the model's input size (the graph's static input width).
    """
    import onnxruntime as ort

    started = time.perf_counter()
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
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


def export_onnx(net: Any, path: Path, size: int = MODEL_SIZE) -> None:
    """Export ``image -> logits`` (opset 17, dynamic batch axis)."""
    _export_onnx(net, (1, 2, size, size), path, input_name=INPUT_NAME, output_names=[OUTPUT_NAME])


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
    crop: int = _CROP,
    nodule_crops: float = 0.8,
    nac_warmup: int = 0,
    small_boost: float = 1.0,
    hard_negative_crops: float = 0.0,
    hard_negative_every: int = 3,
    mine_images: int = 400,
    implant_crops: float = 0.0,
    init: Path | None = None,
    log: Callable[[str], None] | None = None,
):
    """Train a U-Net on ``samples``; returns ``(net, final loss)``.

    ``small_boost`` > 1 weights the cross-entropy of each nodule's pixels by
    ``clip(A15 / area, 1, small_boost)`` (``A15`` = the area of a 15 mm nodule on the grid),
    so that a small nodule counts about as much as a large one instead of by its pixels.

    ``crop``: edge of the square training crops (model pixels); ``nodule_crops``: the share
    of crops placed around a nodule; ``nac_warmup``: epochs trained without the NAC term
    before it is switched on (its weight then ramps linearly to ``nac_weight`` over one epoch).

    ``hard_negative_crops`` > 0: every ``hard_negative_every`` epochs the network looks at
    ``mine_images`` training radiographs whole (:func:`mine_false_positives`), and that share
    of the next epochs' crops is centred on a false positive it found there (each alike), so
    that the responses which set the 0.2 FP/image threshold are the ones trained away.

    ``implant_crops`` > 0: that share of the crops (other than those on mined false positives)
    get one or two nodules of other training radiographs embedded in their lungs
    (:mod:`.implants`).
    ``init``: a ``model.pt`` of the same ``channels`` to start from (fine-tuning) instead of
    random weights.
    """
    import torch
    import torch.nn.functional as F

    from models.cxr_nodule.net import NoduleUNet

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = NoduleUNet(channels)
    if init is not None:
        net.load_state_dict(torch.load(init))
    optimiser = torch.optim.Adam(net.parameters(), lr=learning_rate)
    steps_per_epoch = max(1, len(samples) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, learning_rate, total_steps=epochs * steps_per_epoch)
    loss_value = float("nan")
    prepared = [prepared_inputs(s, with_twin=nac_weight > 0 and s.has_twin) for s in samples]
    mined: list[tuple[int, float, float, float]] = []
    bank = nodule_bank(samples) if implant_crops > 0 else []
    if log and bank:
        log(f"  {len(bank)} nodules to embed in other radiographs")
    for epoch in range(epochs):
        if hard_negative_crops > 0 and epoch % max(1, hard_negative_every) == 0 and (init is not None or epoch > 0):
            subset = rng.choice(len(samples), size=min(mine_images, len(samples)), replace=False)
            mined = mine_false_positives(net, samples, prepared, subset)
            if log:
                log(f"  mined {len(mined)} false positives on {len(subset)} training images"
                    f" ({sum(m[3] >= 0.5 for m in mined)} scoring >= 0.5)")
            net.train()
        order = rng.permutation(len(samples))
        total = 0.0
        parts = np.zeros(6)  # dice, bce, nac top-1 %, nac consistency, mean p on nodules, mean p elsewhere
        net.train()
        for step in range(steps_per_epoch):
            chosen = list(order[step * batch_size:(step + 1) * batch_size])
            batch = [samples[i] for i in chosen]
            ramp = min(1.0, (epoch - nac_warmup + (step + 1) / steps_per_epoch)) if epoch >= nac_warmup else 0.0
            w_nac = nac_weight * ramp
            centres: list[tuple[float, float] | None] = [None] * len(chosen)
            if mined:
                for k in range(len(chosen)):
                    if rng.random() < hard_negative_crops:
                        index, row, col, _ = mined[int(rng.integers(len(mined)))]
                        chosen[k], centres[k] = index, (row, col)
                batch = [samples[i] for i in chosen]
            img, twin, mask = _crops(batch, [prepared[i] for i in chosen], rng, crop, nodule_crops,
                                     with_twin=w_nac > 0, centres=centres, bank=bank, implant_crops=implant_crops)
            paired = torch.tensor([float(s.has_twin) for s in batch])
            x = torch.from_numpy(img)
            y = torch.from_numpy(mask)[:, None]
            pixel_weight = None
            if small_boost > 1.0:
                pixel_weight = torch.from_numpy(_size_weights(mask, samples[0].image.shape[-1], small_boost))[:, None]
            logit_abn = net(x)
            if w_nac > 0:
                # a separate pass: with one batch of near-identical pairs, batch
                # normalisation could tell the halves apart by their statistics
                logit_twin = net(torch.from_numpy(twin))
            prob = torch.sigmoid(logit_abn)
            dice = 1 - (2 * (prob * y).sum() + 1) / (prob.sum() + y.sum() + 1)
            bce = F.binary_cross_entropy_with_logits(logit_abn, y, weight=pixel_weight, pos_weight=torch.tensor(5.0))
            loss = dice + bce
            if w_nac > 0:
                p_twin = torch.sigmoid(logit_twin)
                k = max(1, p_twin[0].numel() // 100)
                top = p_twin.flatten(1).topk(k, dim=1).values.mean(dim=1)
                outside = (1.0 - torch.from_numpy(_dilate(mask))[:, None]) * paired[:, None, None, None]
                consistency = (((prob - p_twin) ** 2) * outside).sum() / outside.sum().clamp(min=1)
                loss = loss + w_nac * ((top * paired).sum() / paired.sum().clamp(min=1) + consistency)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += float(loss.detach())
            with torch.no_grad():
                on = y > 0.5
                parts += [float(dice), float(bce), float(top.mean()) if w_nac > 0 else 0.0,
                          float(consistency) if w_nac > 0 else 0.0,
                          float(prob[on].mean()) if on.any() else 0.0, float(prob[~on].mean())]
        loss_value = total / steps_per_epoch
        if log:
            d, b, t, c, p_on, p_off = parts / steps_per_epoch
            log(f"  epoch {epoch + 1}/{epochs} loss {loss_value:.4f} (dice {d:.3f}, bce {b:.3f}, NAC weight {w_nac:.3g}:"
                f" twin top-1% {t:.3f}, consistency {c:.4f}; mean p on nodules {p_on:.3f}, elsewhere {p_off:.4f})")
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
    size: int = MODEL_SIZE,
    crop: int | None = None,
    nodule_crops: float = 0.8,
    nac_warmup: int = 0,
    small_boost: float = 1.0,
    channels: tuple[int, ...] = (8, 16, 32, 48),
    cache_dir: Path | None = None,
    threads: int = 1,
    hard_negative_crops: float = 0.0,
    implant_crops: float = 0.0,
    learning_rate: float = 2e-3,
    init: Path | None = None,
    fine_phantoms: int = 0,
    styled_phantoms: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Train on phantoms (or ``samples``), pick the 0.2 FP/image threshold, export, evaluate.

    ``samples`` with ``user_data=True`` are the user's radiographs (:mod:`.data`); the
    validation and test phantoms are still generated unless given or set to 0.
    ``size``: the model's input (256 or 512; the phantoms are made at 512); ``crop``: the
    training crop edge (default 96 at 256, 128 at 512: 163 and 108 mm);
    ``cache_dir``: phantoms are read from / written to it (:func:`cached_phantom`);
    ``threads``: PyTorch's intra-op threads; ``hard_negative_crops``, ``implant_crops``, ``learning_rate``
    (the one-cycle peak) and ``init`` (fine-tune from a ``model.pt``): see :func:`fit`.
    ``fine_phantoms``: that many more training phantoms (the seeds after ``phantoms``), made on
    finer detectors (:data:`FINE_SIZES`, by seed) and resampled to the model's grid as a real
    radiograph is: their pixels average several detector pixels, so they are less noisy
    than a phantom made at 512 (not cached: a 2048 phantom holds 35 MB).
    ``styled_phantoms``: that many more training phantoms (the seeds after those), made at 512
    with randomised styles (:class:`~models.phantoms.cxr.CXRStyle`: dose, grain, blur, value
    mapping, edge processing, patient size and position), cached like the plain ones.

    Returns
    -------
    dict
        The ``model.json`` written beside ``model.onnx`` in ``out_dir``.
    """
    import torch

    if seed + phantoms + fine_phantoms + styled_phantoms > TEST_SEED_BASE:
        raise ValueError("training seeds must stay below TEST_SEED_BASE")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = log or (lambda _m: None)
    t0 = time.perf_counter()
    train_seeds = list(range(seed, seed + phantoms))
    from_phantoms = not user_data
    if samples is None:
        log(f"generating {phantoms} training phantoms")
        samples = make_samples(train_seeds, log, size=size, cache_dir=cache_dir)
        if fine_phantoms:
            fine_seeds = range(seed + phantoms, seed + phantoms + fine_phantoms)
            log(f"generating {fine_phantoms} training phantoms on finer detectors ({', '.join(map(str, FINE_SIZES))})")
            samples = list(samples) + [make_sample(phantom_for_seed(s, FINE_SIZES[s % len(FINE_SIZES)]), size)
                                       for s in tqdm(fine_seeds, desc="fine phantoms", leave=False, disable=None)]
            train_seeds = train_seeds + list(fine_seeds)
        if styled_phantoms:
            first = seed + phantoms + fine_phantoms
            styled_seeds = list(range(first, first + styled_phantoms))
            log(f"generating {styled_phantoms} training phantoms with randomised styles")
            samples = list(samples) + make_samples(styled_seeds, log, size=size, cache_dir=cache_dir, styles=True)
            train_seeds = train_seeds + styled_seeds
    val = val_samples if val_samples is not None else (
        make_samples(range(VAL_SEED_BASE, VAL_SEED_BASE + val_phantoms), size=size, cache_dir=cache_dir)
        if val_phantoms else [])
    test_seeds = list(range(TEST_SEED_BASE, TEST_SEED_BASE + test_phantoms))
    test = test_samples if test_samples is not None else (
        make_samples(test_seeds, log, size=size, cache_dir=cache_dir) if test_phantoms else [])
    crop = int(crop or (_CROP if size <= MODEL_SIZE else 128))
    fit_options = dict(channels=tuple(channels), seed=seed, crop=crop, nodule_crops=nodule_crops,
                       small_boost=small_boost, threads=threads, hard_negative_crops=hard_negative_crops,
                       implant_crops=implant_crops,
                       learning_rate=learning_rate, init=init, log=log)
    generation_seconds = time.perf_counter() - t0

    channels = fit_options["channels"]
    comparison: dict[str, Any] = {}
    if compare_without_nac and test:
        log("training without the NAC term (comparison)")
        t1 = time.perf_counter()
        plain, _ = fit(samples, epochs=epochs, nac_weight=0.0, **fit_options)
        plain_path = out_dir / "without_nac.onnx"
        export_onnx(plain, plain_path, size)
        report, _ = evaluate(plain_path, test_seeds, samples=test)
        comparison["without_nac"] = {**asdict(report), "training_seconds": round(time.perf_counter() - t1, 1)}
        plain_path.unlink()
    log(f"training with nac_weight={nac_weight} (warm-up {nac_warmup} epochs), size {size}, crop {crop}")
    t1 = time.perf_counter()
    net, final_loss = fit(samples, epochs=epochs, nac_weight=nac_weight, nac_warmup=nac_warmup, **fit_options)
    training_seconds = time.perf_counter() - t1
    model_path = out_dir / "model.onnx"
    export_onnx(net, model_path, size)
    torch.save(net.state_dict(), out_dir / "model.pt")

    score_threshold = 0.5
    metrics: dict[str, Any] = {}
    if val:
        val_report, val_curve = evaluate(model_path, list(range(VAL_SEED_BASE, VAL_SEED_BASE + val_phantoms)), samples=val)
        score_threshold = float(min(max(val_curve.threshold_at(0.2), CANDIDATE_THRESHOLD), 0.9999))
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
        "input": {"name": INPUT_NAME, "shape": ["N", 2, size, size]},
        "output": {"name": OUTPUT_NAME, "shape": ["N", 1, size, size]},
        "detail_sigma_px": detail_sigma(size),
        "candidate_threshold": CANDIDATE_THRESHOLD,
        "score_threshold": float(np.floor(score_threshold * 1e6) / 1e6),
        "trained_on": {
            "data": "models.phantoms.cxr phantoms (seed % 4 nodules)" if from_phantoms else "user data",
            "phantoms": len(samples),
            "seeds": [train_seeds[0], train_seeds[-1]] if from_phantoms and train_seeds else [],
            "phantom_size": PHANTOM_SIZE,
            "epochs": epochs,
            "nac_weight": nac_weight,
            "nac_warmup_epochs": nac_warmup,
            "crop": crop,
            "nodule_crops": nodule_crops,
            "small_boost": small_boost,
            "hard_negative_crops": hard_negative_crops,
            "implant_crops": implant_crops,
            "fine_phantoms": fine_phantoms,
            **({"fine_sizes": list(FINE_SIZES)} if fine_phantoms else {}),
            "styled_phantoms": styled_phantoms,
            "learning_rate": learning_rate,
            **({"fine_tuned_from": str(init)} if init is not None else {}),
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


def prepared_inputs(sample: Sample, with_twin: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`model_input` of a sample's radiograph (and of its twin when ``with_twin``), as float16.

    Computed once per sample before training: a crop of it is exactly the crop's network input
    (the detail channel is a property of the whole image), so no step recomputes a Gaussian.
    """
    image = model_input(np.asarray(sample.image, dtype=np.float32)).astype(np.float16)
    twin = model_input(np.asarray(sample.twin, dtype=np.float32)).astype(np.float16) if with_twin else None
    return image, twin


def implanted_input(
    sample: Sample, r0: int, c0: int, crop: int, bank: Sequence[Implant], rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The network input and mask of one crop with one or two nodules of ``bank`` embedded in
    its lungs (:func:`~models.cxr_nodule.implants.embed`). The detail channel is computed on
    the crop and 4 sigma around it, the reach of its Gaussian, so it equals the whole image's
    there."""
    size = sample.image.shape[-1]
    sigma = detail_sigma(size)
    margin = int(np.ceil(4 * sigma)) + 1
    e0, e1 = max(r0 - margin, 0), min(r0 + crop + margin, size)
    f0, f1 = max(c0 - margin, 0), min(c0 + crop + margin, size)
    image = sample.image[e0:e1, f0:f1].astype(np.float32)
    mask = sample.mask[e0:e1, f0:f1].copy()
    inside = np.zeros(image.shape, dtype=bool)   # implants centred inside the crop itself
    inside[r0 - e0:r0 - e0 + crop, c0 - f0:c0 - f0 + crop] = sample.placeable[r0:r0 + crop, c0:c0 + crop]
    if inside.any():
        for _ in range(int(rng.integers(1, 3))):
            embed(image, mask, inside, sample.value_scale, bank[int(rng.integers(len(bank)))], rng)
    np.clip(image, 0.0, 1.0, out=image)
    cut = (slice(r0 - e0, r0 - e0 + crop), slice(c0 - f0, c0 - f0 + crop))
    return model_input(image, sigma)[(slice(None),) + cut], mask[cut]


def crop_window(sample: Sample, rng: np.random.Generator, crop: int = _CROP,
                nodule_crops: float = 0.8, centre: tuple[float, float] | None = None) -> tuple[int, int, bool]:
    """``(row, column, mirrored)`` of one training crop: around ``centre`` when given (a mined
    false positive), else with probability ``nodule_crops`` around one of the sample's nodules,
    else anywhere on the image; centred crops are jittered."""
    size = sample.image.shape[0]
    if centre is None and sample.truths and rng.random() < nodule_crops:
        centre = sample.truths[int(rng.integers(len(sample.truths)))][:2]
    if centre is not None:
        jitter = int(round(crop * 40 / _CROP))
        r0 = int(np.clip(centre[0] - crop / 2 + rng.integers(-jitter, jitter + 1), 0, size - crop))
        c0 = int(np.clip(centre[1] - crop / 2 + rng.integers(-jitter, jitter + 1), 0, size - crop))
    else:
        # anywhere on the image: a model that never saw the neck and shoulders in
        # training answers there with confident false positives at inference
        r0 = int(rng.integers(0, size - crop + 1))
        c0 = int(rng.integers(0, size - crop + 1))
    return r0, c0, bool(rng.random() < 0.5)


def _crops(
    batch: Sequence[Sample], prepared: Sequence[tuple[np.ndarray, np.ndarray | None]], rng: np.random.Generator,
    crop: int = _CROP, nodule_crops: float = 0.8, with_twin: bool = True,
    centres: Sequence[tuple[float, float] | None] | None = None,
    bank: Sequence[Implant] = (), implant_crops: float = 0.0,
):
    """Training crops of image, twin (zeros unless ``with_twin``) and mask.

    ``prepared``: :func:`prepared_inputs` of each sample of ``batch``, in the same order;
    ``centres``: per sample, ``None`` or the point its crop is centred on (:func:`crop_window`);
    ``bank``, ``implant_crops``: nodules embedded in that share of the crops (:func:`fit`).
    """
    imgs, twins, masks = [], [], []
    for k, (s, (image_input, twin_input)) in enumerate(zip(batch, prepared)):
        centre = centres[k] if centres else None
        r0, c0, flip = crop_window(s, rng, crop, nodule_crops, centre)
        window = (slice(None), slice(r0, r0 + crop), slice(c0, c0 + crop))
        crop_mask = s.mask[r0:r0 + crop, c0:c0 + crop]
        if bank and s.placeable is not None and centre is None and rng.random() < implant_crops:
            image_crop, crop_mask = implanted_input(s, r0, c0, crop, bank, rng)
        else:
            image_crop = image_input[window]
        sources = [(imgs, image_crop), (masks, crop_mask)]
        if with_twin and twin_input is not None:
            sources.append((twins, twin_input[window]))
        else:
            twins.append(np.zeros((2, crop, crop), dtype=np.float32))
        for target, piece in sources:
            target.append(piece[..., ::-1] if flip else piece)
    return (
        np.ascontiguousarray(np.stack(imgs), dtype=np.float32),
        np.ascontiguousarray(np.stack(twins), dtype=np.float32),
        np.ascontiguousarray(np.stack(masks), dtype=np.float32),
    )


def mine_false_positives(
    net: Any, samples: Sequence[Sample], prepared: Sequence[tuple[np.ndarray, np.ndarray | None]],
    indices: Sequence[int], batch: int = 4,
) -> list[tuple[int, float, float, float]]:
    """``(sample index, row, col, score)`` of every candidate (:func:`model_detections`) on the
    whole radiographs ``indices`` whose centre hits no nodule, the strongest first."""
    import torch

    net.eval()
    found = []
    with torch.no_grad():
        for start in range(0, len(indices), batch):
            chunk = [int(i) for i in indices[start:start + batch]]
            x = torch.from_numpy(np.stack([prepared[i][0] for i in chunk]).astype(np.float32))
            for i, logits in zip(chunk, net(x).numpy()):
                for row, col, score, _ in model_detections(logits, CANDIDATE_THRESHOLD):
                    if matched_nodule(row, col, samples[i].truths) is None:
                        found.append((i, row, col, score))
    return sorted(found, key=lambda f: -f[3])


def _size_weights(mask: np.ndarray, size: int, boost: float) -> np.ndarray:
    """Per-pixel weights: 1 off nodules, ``clip(A15 / area, 1, boost)`` on each nodule's pixels."""
    radius_15 = 7.5 / (430.0 / size)
    area_15 = np.pi * radius_15 ** 2
    out = np.ones(mask.shape, dtype=np.float32)
    for i, m in enumerate(mask):
        labels, n = ndimage.label(m > 0.5)
        if n:
            areas = ndimage.sum_labels(np.ones_like(m), labels, index=np.arange(1, n + 1))
            w = np.clip(area_15 / np.maximum(areas, 1.0), 1.0, boost).astype(np.float32)
            out[i][labels > 0] = w[labels[labels > 0] - 1]
    return out


def _dilate(mask: np.ndarray) -> np.ndarray:
    return ndimage.binary_dilation(mask > 0.5, iterations=3, axes=(1, 2)).astype(np.float32)
