"""Train, export and evaluate the chest CT landmark classifiers.

Data
----
* Phantoms (``models.phantoms.chest_ct``): training seeds ``seed .. seed + phantoms - 1``
  (below :data:`TEST_SEED_BASE`); held-out evaluation seeds from :data:`TEST_SEED_BASE`
  (1,000,000) on, never trained on.
* Real data: a folder of DICOM files and a CSV (:func:`read_labels`) that names, per
  series, the slice of each landmark by SOP Instance UID or Instance Number.

Every series goes through the node's own preprocessing (:mod:`.preprocess`), kept as a
``(n, 128, 128)`` float16 volume; batches stack the context channels on the fly.

Training (as in the research, scaled to a CPU)
----------------------------------------------
Three independent binary classifiers, "landmark slice vs every other slice". Each step
trains each classifier on its own batch:

* half of the batch is drawn from the positive slices with replacement, i.e. the
  minority class is **oversampled** to parity with the negatives;
* the other half are negatives: a share ``hard_fraction`` from the slices 1-6 away from
  the truth (the hard negatives that decide a ±1 pick), the rest from the whole series;
* the loss is binary cross-entropy **weighted by class**, negatives weighing
  ``fp_weight`` (default 2) times the positives, which penalises false positives as the
  research does;
* **augmentation**: random rotation (±8°), scale (0.9-1.1) and shift (±5 %), intensity
  gain and offset, Gaussian noise;
* AdamW with a one-cycle learning-rate schedule (the research: AdamW, lr 1e-3, decay in
  the second half).

After training: ``model.pt`` (state dict), ``model.onnx`` (opset 17, dynamic batch, input
``image``, outputs ``apex``, ``carina``, ``diaphragm``), ``model.json``, a checkpoint per
epoch (``checkpoint.pt``, for ``resume``), the held-out evaluation and ``card.md``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from pydicom.uid import generate_uid

from models.chest_ct_landmarks.augment import AUGMENTATIONS
from models.chest_ct_landmarks.datasets import (
    FAMILIES, LabelledSeries, dicom_dataset, generate_phantom, phantom_dataset, phantom_series, read_labels,
)
from models.chest_ct_landmarks.evaluation import TEST_SEED_BASE, EvalReport, evaluate, evaluate_series
from models.chest_ct_landmarks.findings import DEFAULT_FRACTIONS, LANDMARKS
from models.chest_ct_landmarks.fit import DEFAULT_REPEATS, export_onnx, fit
from models.chest_ct_landmarks.preprocess import (
    AIRWAY_FIELD_MM, AIRWAY_INPUT, AIRWAY_MATRIX, CONTEXT_MM, CROPS, DEFAULT_CROP, DIAPHRAGM_PICKS, INPUT_NAME, MATRIX,
    WINDOW_HU, check_carina_window,
)
from models.training import output_folder, parameter_count, quiet, save_weights, seed_torch, timestamp_version, write_json

__all__ = [
    "AUGMENTATIONS",
    "DEFAULT_REPEATS",
    "FAMILIES",
    "TEST_SEED_BASE",
    "EvalReport",
    "LabelledSeries",
    "TrainReport",
    "dicom_dataset",
    "evaluate",
    "evaluate_series",
    "export_onnx",
    "generate_phantom",
    "phantom_dataset",
    "phantom_series",
    "read_labels",
    "train",
]

MODEL_NAME = "chest-ct-landmarks"


@dataclass
class TrainReport:
    """What :func:`train` did and measured."""

    out_dir: Path
    model_path: Path
    json_path: Path
    series: int
    epochs: int
    steps: int
    parameters: int
    final_loss: dict[str, float]
    generation_seconds: float
    training_seconds: float
    test: EvalReport | None


def train(
    out_dir: Path,
    *,
    phantoms: int = 0, seed: int = 0, dicom_dir: Path | None = None, labels: Path | None = None,
    arch: str = "small", pretrained: Path | None = None, width: int = 16,
    epochs: int = 10,
    steps_per_epoch: int = 40,
    batch_size: int = 32,
    learning_rate: float = 2e-3,
    fp_weight: float = 2.0,
    hard_fraction: float = 0.5,
    repeats: Mapping[str, int] | None = None,
    slice_thickness: float = 4.0,
    test_phantoms: int = 50,
    cache_dir: Path | None = None,
    family: str = "a",
    family_b_phantoms: int = 0,
    styles: float = 0.0,
    augment: str = "basic",
    crop: str = DEFAULT_CROP,
    views: Mapping[str, str] | None = None,
    carina_window: Sequence[float] | None = None,
    diaphragm_pick: str = "argmax",
    resume: bool = False,
    threads: int = 1,
    version: str | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainReport:
    """Train the three classifiers, export ONNX, evaluate on held-out phantoms, write the card.

    Parameters
    ----------
    out_dir:
        Receives ``model.pt``, ``model.onnx``, ``model.json``, ``checkpoint.pt`` and
        ``card.md``.
    phantoms, seed:
        Training phantoms, seeds ``seed .. seed + phantoms - 1``.
    dicom_dir, labels:
        Real labelled series (both or neither); used together with any phantoms.
    arch, pretrained, width:
        Architecture (:data:`~models.chest_ct_landmarks.net.ARCHITECTURES`), an optional
        state dict to start each classifier from, the width of ``small``.
    epochs, steps_per_epoch, batch_size, learning_rate:
        Each step trains each classifier on one batch.
    fp_weight:
        Loss weight of a negative slice relative to a positive one.
    hard_fraction:
        Share of the negatives drawn from the slices 1-6 away from the truth.
    repeats:
        Batches per step for each classifier (default :data:`DEFAULT_REPEATS`: the
        carina, the hardest task, gets two).
    slice_thickness:
        Slice thickness of the phantoms (training and held-out).
    test_phantoms:
        Held-out phantoms (seeds from :data:`TEST_SEED_BASE`) of *each* family evaluated
        after training: the training family (``metrics.test``) and every other one
        (``metrics.families``), which is the cross-family figure.
    family:
        Phantom family of the training phantoms (:data:`FAMILIES`).
    family_b_phantoms:
        With family ``a``: that many family-B phantoms (seeds ``0 .. family_b_phantoms - 1``)
        trained on beside them; ``trained_on.family`` is then ``a+b``.
    styles:
        Share of the training phantoms (the first seeds) drawn with randomised styles
        (family A; their slice thickness is the style's, 3-5 mm).
    augment:
        ``basic`` (rotation, scale, shift, gain, offset, white noise), ``style`` (also
        blur or edge enhancement, correlated noise, gamma, wider geometry: the styles'
        counterpart on the windowed input) or ``texture`` (the intensity, sharpness and
        noise randomisation of ``style`` with a geometry for a crop that does not
        change with arms or pads: ±10°, scale 0.85-1.15, shift ±8 %).
    carina_window:
        ``(lo, hi)``: pick the carina only between ``lo`` and ``hi`` of the way from the
        apex pick down to the diaphragm pick (recorded in ``model.json``; see
        :func:`~models.chest_ct_landmarks.preprocess.postprocess`). Used by the held-out
        evaluation and by the node.
    diaphragm_pick:
        ``argmax`` or ``lowest`` (:data:`~models.chest_ct_landmarks.preprocess.DIAPHRAGM_PICKS`;
        recorded in ``model.json`` when not ``argmax``), used like ``carina_window``.
    views:
        Landmark → view (:data:`~models.chest_ct_landmarks.net.VIEWS`) for the landmarks
        that should not use the architecture's default view.
    crop:
        The preprocessing crop (:data:`~models.chest_ct_landmarks.preprocess.CROPS`),
        recorded as ``"crop"`` in ``model.json`` so that the node crops alike.
    cache_dir:
        Folder that caches preprocessed phantoms between runs.
    resume:
        Continue from ``out_dir/checkpoint.pt`` (weights, optimiser state, epoch count); the
        learning-rate schedule is this run's, fast-forwarded, so a larger ``epochs`` extends
        training.
    threads:
        ``torch.set_num_threads`` (1 is fastest on a busy machine).
    version:
        Model version; defaults to a timestamp.
    log:
        Callable for progress lines (and a progress bar on stderr), or ``None``.

    Returns
    -------
    TrainReport
    """
    window = _check_options(phantoms, seed, dicom_dir, labels, family, augment, styles, crop, carina_window,
                            diaphragm_pick, views)
    out_dir = output_folder(out_dir)
    rng = seed_torch(seed, threads)
    say = quiet(log)

    from models.chest_ct_landmarks.net import LandmarkNet, default_views

    model = LandmarkNet(arch=arch, width=width, pretrained=pretrained,  # fails fast without timm
                        views={**default_views(arch), **(views or {})})
    airway = model.uses_airway
    t0 = time.perf_counter()
    n_styled = int(round(phantoms * styles))
    data = _training_data(phantoms, n_styled, seed, slice_thickness, cache_dir, log, family, crop, airway,
                          dicom_dir, labels)
    n_family_b = family_b_phantoms if family == "a" else 0
    if n_family_b:
        data += phantom_dataset(range(n_family_b), slice_thickness=slice_thickness, cache_dir=cache_dir,
                                log=log, family="b", crop=crop, airway=airway)
    generation_s = time.perf_counter() - t0
    n_slices = sum(len(d.volume) for d in data)
    say(f"{len(data)} series, {n_slices} slices ready in {generation_s:.1f}s")

    reps = _repeats(repeats)
    t1 = time.perf_counter()
    final = fit(model, data, out_dir / "checkpoint.pt", rng, seed=seed, arch=arch, epochs=epochs,
                steps_per_epoch=steps_per_epoch, batch_size=batch_size, learning_rate=learning_rate,
                fp_weight=fp_weight, hard_fraction=hard_fraction, reps=reps, augment=augment, resume=resume, log=log)
    training_s = time.perf_counter() - t1

    model.eval()
    save_weights(model, out_dir / "model.pt")
    model_path = out_dir / "model.onnx"
    export_onnx(model, model_path)
    n_params = parameter_count(model)
    meta = _model_json(version, arch, width, dict(model.views), crop, window, diaphragm_pick, airway)
    meta["trained_on"] = _trained_on(
        phantoms=phantoms, family=family + ("+b" if n_family_b else ""), styled=n_styled, augment=augment, seed=seed, slice_thickness=slice_thickness,
        series=len(data) - n_family_b, slices=n_slices, epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
        learning_rate=learning_rate, fp_weight=fp_weight, hard_fraction=hard_fraction, reps=reps, pretrained=pretrained,
        parameters=n_params, generation_s=generation_s, training_s=training_s, final=final)
    if n_family_b:
        meta["trained_on"]["family_b_seeds"] = [0, n_family_b - 1]
    meta["metrics"] = {"test": None, "families": {}}
    test = _held_out(meta, model_path, test_phantoms, slice_thickness, cache_dir, log, family, crop, airway,
                     window, diaphragm_pick)
    json_path = write_json(out_dir / "model.json", meta)
    from models.chest_ct_landmarks.card import render_card

    (out_dir / "card.md").write_text(render_card(meta), encoding="utf-8")
    return TrainReport(
        out_dir=out_dir, model_path=model_path, json_path=json_path, series=len(data), epochs=epochs,
        steps=epochs * steps_per_epoch, parameters=n_params, final_loss=final, generation_seconds=generation_s,
        training_seconds=training_s, test=test,
    )


def _check_options(
    phantoms: int, seed: int, dicom_dir: Path | None, labels: Path | None, family: str, augment: str, styles: float,
    crop: str, carina_window: Sequence[float] | None, diaphragm_pick: str, views: Mapping[str, str] | None,
) -> tuple[float, float] | None:
    """Refuse inconsistent training options (``ValueError``); the checked carina window."""
    if phantoms < 0 or (phantoms == 0 and dicom_dir is None):
        raise ValueError("give --phantoms N and/or --dicom DIR --labels CSV")
    if (dicom_dir is None) != (labels is None):
        raise ValueError("--dicom and --labels go together")
    if seed < 0 or seed + phantoms > TEST_SEED_BASE:
        raise ValueError(f"training seeds must lie in 0..{TEST_SEED_BASE - 1}")
    if family not in FAMILIES:
        raise ValueError(f"unknown phantom family {family!r} (choose from {', '.join(FAMILIES)})")
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r} (choose from {', '.join(AUGMENTATIONS)})")
    if not 0.0 <= styles <= 1.0 or (styles and family != "a"):
        raise ValueError("styles is a share in [0, 1] and applies to family a")
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r} (choose from {', '.join(CROPS)})")
    window = check_carina_window(carina_window)
    if diaphragm_pick not in DIAPHRAGM_PICKS:
        raise ValueError(f"unknown diaphragm pick {diaphragm_pick!r} (choose from {', '.join(DIAPHRAGM_PICKS)})")
    unknown = sorted(set(views or {}) - set(LANDMARKS))
    if unknown:
        raise ValueError(f"views for unknown landmark(s) {', '.join(unknown)} (choose from {', '.join(LANDMARKS)})")
    return window


def _repeats(repeats: Mapping[str, int] | None) -> dict[str, int]:
    """Batches per step for each classifier: :data:`DEFAULT_REPEATS` updated by ``repeats``."""
    reps = {**DEFAULT_REPEATS, **(repeats or {})}
    if set(reps) != set(LANDMARKS) or min(reps.values()) < 1:
        raise ValueError(f"repeats must give each of {', '.join(LANDMARKS)} at least 1 batch per step")
    return reps


def _trained_on(
    *, phantoms: int, family: str, styled: int, augment: str, seed: int, slice_thickness: float, series: int,
    slices: int, epochs: int, steps_per_epoch: int, batch_size: int, learning_rate: float, fp_weight: float,
    hard_fraction: float, reps: Mapping[str, int], pretrained: Path | None, parameters: int, generation_s: float,
    training_s: float, final: Mapping[str, float],
) -> dict[str, Any]:
    """``model.json``'s ``trained_on``: the data and settings of the run, its times and final losses."""
    return {
        "phantoms": phantoms,
        "family": family,
        "styled_phantoms": styled,
        "augment": augment,
        "seeds": [seed, seed + phantoms - 1] if phantoms else [],
        "slice_thickness": slice_thickness,
        "real_series": series - phantoms,
        "slices": slices,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "fp_weight": fp_weight,
        "hard_fraction": hard_fraction,
        "repeats": dict(reps),
        "pretrained": str(pretrained) if pretrained else None,
        "parameters": parameters,
        "generation_seconds": round(generation_s, 1),
        "training_seconds": round(training_s, 1),
        "final_loss": {n: round(v, 5) for n, v in final.items()},
    }


def _training_data(
    phantoms: int, n_styled: int, seed: int, slice_thickness: float, cache_dir: Path | None,
    log: Callable[[str], None] | None, family: str, crop: str, airway: bool, dicom_dir: Path | None,
    labels: Path | None,
) -> list[LabelledSeries]:
    """The styled phantoms, then the plain ones, then the labelled DICOM series."""
    data: list[LabelledSeries] = []
    if n_styled:
        data += phantom_dataset(range(seed, seed + n_styled), slice_thickness=None, cache_dir=cache_dir, log=log,
                                family=family, styles=True, crop=crop, airway=airway)
    if phantoms - n_styled:
        data += phantom_dataset(range(seed + n_styled, seed + phantoms), slice_thickness=slice_thickness,
                                cache_dir=cache_dir, log=log, family=family, crop=crop, airway=airway)
    if dicom_dir is not None:
        data += dicom_dataset(Path(dicom_dir), Path(labels), crop=crop, airway=airway)  # type: ignore[arg-type]
    return data


def _model_json(version: str | None, arch: str, width: int, views: dict[str, str], crop: str,
                window: Sequence[float] | None, diaphragm_pick: str, airway: bool) -> dict[str, Any]:
    """``model.json`` of the trained classifiers, before ``trained_on`` and ``metrics``."""
    return {
        "name": MODEL_NAME,
        "version": timestamp_version(version),
        "device_uid": generate_uid(prefix=None),
        "arch": arch,
        "width": width,
        "views": views,
        "landmarks": list(LANDMARKS),
        "crop": crop,
        **({"carina_window": list(window)} if window else {}),
        **({"diaphragm_pick": diaphragm_pick} if diaphragm_pick != "argmax" else {}),
        "input": {"name": INPUT_NAME, "shape": ["N", 3, MATRIX, MATRIX], "window_hu": list(WINDOW_HU),
                  "context_mm": CONTEXT_MM},
        **({"airway_input": {"name": AIRWAY_INPUT, "shape": ["N", 3, AIRWAY_MATRIX, AIRWAY_MATRIX],
                             "field_mm": AIRWAY_FIELD_MM, "window_hu": list(WINDOW_HU), "context_mm": CONTEXT_MM}}
           if airway else {}),
        "outputs": {n: ["N", 1] for n in LANDMARKS},
        "representative_fractions": [[label, f] for label, f in DEFAULT_FRACTIONS],
    }


def _held_out(
    meta: dict[str, Any], model_path: Path, test_phantoms: int, slice_thickness: float, cache_dir: Path | None,
    log: Callable[[str], None] | None, family: str, crop: str, airway: bool, window: Sequence[float] | None,
    diaphragm_pick: str,
) -> EvalReport | None:
    """Evaluate held-out phantoms of every family into ``meta["metrics"]``; the training family's report."""
    say = quiet(log)
    test = None
    if test_phantoms > 0:
        seeds = range(TEST_SEED_BASE, TEST_SEED_BASE + test_phantoms)
        for fam in FAMILIES:
            rep = evaluate(model_path, phantom_dataset(seeds, slice_thickness=slice_thickness, cache_dir=cache_dir,
                                                       log=log, family=fam, crop=crop, airway=airway),
                           source=f"held-out phantoms, family {fam}", seed_range=[seeds[0], seeds[-1]],
                           carina_window=window, diaphragm_pick=diaphragm_pick)
            meta["metrics"]["families"][fam] = rep.summary()
            if fam == family:
                test = rep
                meta["metrics"]["test"] = rep.summary()
            say(f"held-out family {fam}: "
                + json.dumps({n: v["one_up_down_precision"] for n, v in rep.per_landmark.items()}))
    return test
