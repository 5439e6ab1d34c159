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

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from pydicom.uid import generate_uid
from tqdm import tqdm

from models.cxr_nodule.crops import (
    CROP, crop_window, implanted_input, mine_false_positives, prepared_inputs, training_crops,
)
from models.cxr_nodule.evaluation import CANDIDATE_THRESHOLD, TEST_SEED_BASE, VAL_SEED_BASE, EvalReport, evaluate
from models.cxr_nodule.fit import export_onnx, fit
from models.cxr_nodule.preprocess import INPUT_NAME, MODEL_SIZE, OUTPUT_NAME, detail_sigma
from models.cxr_nodule.samples import (
    PHANTOM_SIZE, Sample, cached_phantom, make_sample, make_samples, min_radius, phantom_for_seed,
)
from models.training import dated_version, output_folder, parameter_count, quiet, save_weights, write_json

__all__ = [
    "FINE_SIZES", "PHANTOM_SIZE", "TEST_SEED_BASE", "VAL_SEED_BASE", "EvalReport", "Sample", "cached_phantom",
    "crop_window", "evaluate", "export_onnx", "fit", "implanted_input", "make_sample", "make_samples",
    "min_radius", "mine_false_positives", "phantom_for_seed", "prepared_inputs", "train", "training_crops",
]

FINE_SIZES = (1024, 2048)
"""Detector sizes of the ``fine_phantoms`` of :func:`train` (0.42 and 0.21 mm pixels)."""
MODEL_NAME = "cxr-nodule"


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
    if seed + phantoms + fine_phantoms + styled_phantoms > TEST_SEED_BASE:
        raise ValueError("training seeds must stay below TEST_SEED_BASE")
    out_dir = output_folder(out_dir)
    log = quiet(log)
    t0 = time.perf_counter()
    train_seeds = list(range(seed, seed + phantoms))
    from_phantoms = not user_data
    if samples is None:
        samples, train_seeds = _training_samples(seed, phantoms, fine_phantoms, styled_phantoms, size, cache_dir, log)
    val = val_samples if val_samples is not None else (
        make_samples(range(VAL_SEED_BASE, VAL_SEED_BASE + val_phantoms), size=size, cache_dir=cache_dir)
        if val_phantoms else [])
    test_seeds = list(range(TEST_SEED_BASE, TEST_SEED_BASE + test_phantoms))
    test = test_samples if test_samples is not None else (
        make_samples(test_seeds, log, size=size, cache_dir=cache_dir) if test_phantoms else [])
    crop = int(crop or (CROP if size <= MODEL_SIZE else 128))
    fit_options = dict(channels=tuple(channels), seed=seed, crop=crop, nodule_crops=nodule_crops,
                       small_boost=small_boost, threads=threads, hard_negative_crops=hard_negative_crops,
                       implant_crops=implant_crops,
                       learning_rate=learning_rate, init=init, log=log)
    generation_seconds = time.perf_counter() - t0

    channels = fit_options["channels"]
    comparison = (_without_nac(samples, test, test_seeds, out_dir, size, epochs, fit_options, log)
                  if compare_without_nac and test else {})
    log(f"training with nac_weight={nac_weight} (warm-up {nac_warmup} epochs), size {size}, crop {crop}")
    t1 = time.perf_counter()
    net, final_loss = fit(samples, epochs=epochs, nac_weight=nac_weight, nac_warmup=nac_warmup, **fit_options)
    training_seconds = time.perf_counter() - t1
    model_path = out_dir / "model.onnx"
    export_onnx(net, model_path, size)
    save_weights(net, out_dir / "model.pt")

    score_threshold, metrics = _measure(model_path, val, val_phantoms, test, test_seeds, out_dir)
    if comparison and test:
        comparison["with_nac"] = {**metrics["test"], "training_seconds": round(training_seconds, 1)}
    trained_on = _trained_on(
        from_phantoms=from_phantoms, samples=len(samples), train_seeds=train_seeds, epochs=epochs,
        nac_weight=nac_weight, nac_warmup=nac_warmup, crop=crop, nodule_crops=nodule_crops, small_boost=small_boost,
        hard_negative_crops=hard_negative_crops, implant_crops=implant_crops, fine_phantoms=fine_phantoms,
        styled_phantoms=styled_phantoms, learning_rate=learning_rate, init=init,
        generation_seconds=generation_seconds, training_seconds=training_seconds, final_loss=final_loss,
        parameters=parameter_count(net))
    meta = _model_json(version, channels, size, score_threshold, trained_on, metrics)
    if comparison:
        meta["nac_comparison"] = comparison
    write_json(out_dir / "model.json", meta)
    return meta


def _trained_on(
    *, from_phantoms: bool, samples: int, train_seeds: list[int], epochs: int, nac_weight: float, nac_warmup: int,
    crop: int, nodule_crops: float, small_boost: float, hard_negative_crops: float, implant_crops: float,
    fine_phantoms: int, styled_phantoms: int, learning_rate: float, init: Path | None, generation_seconds: float,
    training_seconds: float, final_loss: float, parameters: int,
) -> dict[str, Any]:
    """``model.json``'s ``trained_on``: the data and settings of the run, its times and final loss."""
    return {
        "data": "models.phantoms.cxr phantoms (seed % 4 nodules)" if from_phantoms else "user data",
        "phantoms": samples,
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
        "parameters": parameters,
    }


def _without_nac(
    samples: Sequence[Sample], test: Sequence[Sample], test_seeds: list[int], out_dir: Path, size: int, epochs: int,
    fit_options: dict[str, Any], log: Callable[[str], None],
) -> dict[str, Any]:
    """Train and evaluate the same network without the NAC term (the comparison); its held-out report."""
    log("training without the NAC term (comparison)")
    t1 = time.perf_counter()
    plain, _ = fit(samples, epochs=epochs, nac_weight=0.0, **fit_options)
    plain_path = out_dir / "without_nac.onnx"
    export_onnx(plain, plain_path, size)
    report, _ = evaluate(plain_path, test_seeds, samples=test)
    plain_path.unlink()
    return {"without_nac": {**asdict(report), "training_seconds": round(time.perf_counter() - t1, 1)}}


def _measure(
    model_path: Path, val: Sequence[Sample], val_phantoms: int, test: Sequence[Sample], test_seeds: list[int],
    out_dir: Path,
) -> tuple[float, dict[str, Any]]:
    """The score threshold at 0.2 FP/image on the validation samples, and the validation and test metrics."""
    score_threshold = 0.5
    metrics: dict[str, Any] = {}
    if val:
        val_report, val_curve = evaluate(model_path, list(range(VAL_SEED_BASE, VAL_SEED_BASE + val_phantoms)), samples=val)
        score_threshold = float(min(max(val_curve.threshold_at(0.2), CANDIDATE_THRESHOLD), 0.9999))
        metrics["validation"] = asdict(val_report)
    if test:
        test_report, _ = evaluate(model_path, test_seeds, samples=test, froc_png=out_dir / "froc.png")
        metrics["test"] = asdict(test_report)
    return score_threshold, metrics


def _training_samples(
    seed: int, phantoms: int, fine_phantoms: int, styled_phantoms: int, size: int, cache_dir: Path | None,
    log: Callable[[str], None],
) -> tuple[list[Sample], list[int]]:
    """The training samples (plain, then fine-detector, then styled phantoms) and their seeds."""
    train_seeds = list(range(seed, seed + phantoms))
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
    return samples, train_seeds


def _model_json(version: str | None, channels: Sequence[int], size: int, score_threshold: float,
                trained_on: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """``model.json`` of a trained U-Net."""
    return {
        "name": MODEL_NAME,
        "version": dated_version(version),
        "device_uid": generate_uid(prefix="2.25."),
        "channels": list(channels),
        "input": {"name": INPUT_NAME, "shape": ["N", 2, size, size]},
        "output": {"name": OUTPUT_NAME, "shape": ["N", 1, size, size]},
        "detail_sigma_px": detail_sigma(size),
        "candidate_threshold": CANDIDATE_THRESHOLD,
        "score_threshold": float(np.floor(score_threshold * 1e6) / 1e6),
        "trained_on": trained_on,
        "metrics": metrics,
    }
