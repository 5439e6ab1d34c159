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

import csv
import datetime as _dt
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from tqdm import tqdm
import pydicom
from pydicom.uid import generate_uid

from models.chest_ct_landmarks.findings import DEFAULT_FRACTIONS, LANDMARKS
from models.chest_ct_landmarks.metrics import offset_histogram, one_up_down_precision, slice_offsets
from models.chest_ct_landmarks.preprocess import (
    AIRWAY_FIELD_MM,
    AIRWAY_INPUT,
    AIRWAY_MATRIX,
    CONTEXT_MM,
    CROPS,
    DEFAULT_CROP,
    DIAPHRAGM_PICKS,
    check_carina_window,
    INPUT_NAME,
    MATRIX,
    WINDOW_HU,
    context_offset,
    pixel_spacing,
    postprocess,
    prepare_volumes,
    series_hu,
    slice_spacing,
    stack_context,
)
from node.packs.protocol import sort_slices
from models.onnx_export import export_onnx as _export_onnx

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
    "generate_phantom",
    "phantom_dataset",
    "phantom_series",
    "read_labels",
    "train",
]

TEST_SEED_BASE = 1_000_000
DEFAULT_REPEATS: dict[str, int] = {"apex": 1, "carina": 2, "diaphragm": 1}
"""Batches per training step for each classifier."""
MODEL_NAME = "chest-ct-landmarks"
_HARD_RANGE = 6


@dataclass
class LabelledSeries:
    """One preprocessed series and its truth.

    ``volume`` is ``(n, 128, 128)`` float16 (windowed, cropped); ``offset`` the context
    offset in slices; ``truth`` landmark → slice index of the sorted series; ``airway``
    the ``(n, 64, 64)`` float16 square around the trachea, when asked for.
    """

    name: str
    volume: np.ndarray
    offset: int
    truth: dict[str, int]
    airway: np.ndarray | None = None


@dataclass
class EvalReport:
    """Held-out metrics: per landmark the 1-Up-Down precision and the offset histogram."""

    source: str
    n_series: int
    per_landmark: dict[str, dict[str, Any]]
    seconds: float
    seed_range: list[int] = field(default_factory=list)
    offsets: dict[str, list[int]] = field(default_factory=dict)
    series: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The metrics without the per-series detail."""
        out = asdict(self)
        out.pop("offsets")
        out.pop("series")
        return out


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


# --------------------------------------------------------------------------- data


FAMILIES: tuple[str, ...] = ("a", "b")
"""Phantom families: ``a`` = :mod:`models.phantoms.chest_ct`, ``b`` = :mod:`models.phantoms.chest_ct_b`."""


def generate_phantom(seed: int, *, family: str = "a", slice_thickness: float | None = 4.0, styles: bool = False) -> Any:
    """The :class:`~models.phantoms.chest_ct.ChestCTPhantom` of ``seed`` in ``family``.

    ``styles`` (family A only) draws the randomised scanner and patient styles; with it,
    ``slice_thickness=None`` lets the style choose the slice thickness too.
    """
    if family == "a":
        from models.phantoms.chest_ct import generate_chest_ct

        return generate_chest_ct(int(seed), slice_thickness=slice_thickness, styles=styles)
    if family == "b":
        from models.phantoms.chest_ct_b import generate_chest_ct_b

        return generate_chest_ct_b(int(seed), slice_thickness=4.0 if slice_thickness is None else slice_thickness)
    raise ValueError(f"unknown phantom family {family!r} (choose from {', '.join(FAMILIES)})")


def phantom_series(seed: int, slice_thickness: float | None = 4.0, *, family: str = "a",
                   styles: bool = False, crop: str = DEFAULT_CROP, airway: bool = False) -> LabelledSeries:
    """Generate the phantom of ``seed`` (``family``, ``styles``) and preprocess it like the node does
    (``crop``; with ``airway`` also the square around the trachea)."""
    phantom = generate_phantom(seed, family=family, slice_thickness=slice_thickness, styles=styles)
    spacing = float(np.median(np.diff(phantom.z_positions))) if len(phantom.z_positions) > 1 else phantom.slice_thickness
    name = f"phantom-{family}{'s' if styles else ''}-{seed}"
    volume, trachea = _half_precision(*prepare_volumes(phantom.hu, phantom.pixel_spacing, crop, airway))
    return LabelledSeries(name, volume, context_offset(spacing), dict(phantom.landmarks), trachea)


def _half_precision(volume: np.ndarray, trachea: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Both volumes as float16 (how :class:`LabelledSeries` keeps them)."""
    return volume.astype(np.float16), None if trachea is None else trachea.astype(np.float16)


def phantom_dataset(
    seeds: Iterable[int],
    *,
    slice_thickness: float | None = 4.0,
    cache_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
    family: str = "a",
    styles: bool = False,
    crop: str = DEFAULT_CROP,
    airway: bool = False,
) -> list[LabelledSeries]:
    """Preprocessed phantoms of ``seeds`` (``family``, ``styles``, ``crop``, ``airway``), read from /
    written to ``cache_dir`` (a cached phantom without the airway square is made again when it is asked for)."""
    seeds = [int(s) for s in seeds]
    out = []
    bar = _Progress(len(seeds), f"phantoms ({family}{', styles' if styles else ''})", log is not None)
    tag = "chest" if family == "a" and not styles else f"chest{family}{'s' if styles else ''}"
    thick = "style" if slice_thickness is None else f"{slice_thickness:g}mm"
    if crop != DEFAULT_CROP:
        thick += f"-{crop}"
    for i, s in enumerate(seeds):
        cached = Path(cache_dir) / f"{tag}-{s}-{thick}.npz" if cache_dir else None
        name = f"phantom-{family}{'s' if styles else ''}-{s}"
        item = None
        if cached is not None and cached.exists():
            with np.load(cached) as z:
                if not airway or "airway" in z.files:
                    item = LabelledSeries(name, z["volume"], int(z["offset"]),
                                          dict(zip(LANDMARKS, (int(v) for v in z["truth"]))),
                                          z["airway"] if "airway" in z.files else None)
        if item is None:
            item = phantom_series(s, slice_thickness, family=family, styles=styles, crop=crop, airway=airway)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                extra = {"airway": item.airway} if item.airway is not None else {}
                np.savez(cached, volume=item.volume, offset=item.offset,
                         truth=np.array([item.truth[n] for n in LANDMARKS]), **extra)
        out.append(item)
        bar.update(i + 1)
    bar.close()
    return out


def read_labels(path: Path) -> dict[str, dict[str, str]]:
    """Read a landmark label CSV.

    The CSV has a header with ``series_instance_uid`` and one column per landmark
    (``apex``, ``carina``, ``diaphragm``); each landmark cell is the SOP Instance UID of
    the landmark slice or its Instance Number.

    Returns
    -------
    dict
        Series Instance UID → landmark → the cell's text.

    Raises
    ------
    ValueError
        When a column is missing or a cell is empty.
    """
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        needed = ("series_instance_uid", *LANDMARKS)
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
        out: dict[str, dict[str, str]] = {}
        for row_no, row in enumerate(reader, start=2):
            cells = {k: (row.get(k) or "").strip() for k in needed}
            empty = [k for k, v in cells.items() if not v]
            if empty:
                raise ValueError(f"{path}:{row_no}: empty {', '.join(empty)}")
            out[cells["series_instance_uid"]] = {n: cells[n] for n in LANDMARKS}
    return out


def dicom_dataset(dicom_dir: Path, labels: Path | Mapping[str, Mapping[str, str]],
                  crop: str = DEFAULT_CROP, airway: bool = False) -> list[LabelledSeries]:
    """Load and preprocess (``crop``, ``airway``) every labelled series found under ``dicom_dir``.

    Raises
    ------
    ValueError
        When a labelled series is not found, or a label names no slice of its series.
    """
    table = read_labels(Path(labels)) if not isinstance(labels, Mapping) else labels
    files: dict[str, list[Path]] = {}
    for path in sorted(p for p in Path(dicom_dir).rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        except Exception:
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        if uid in table:
            files.setdefault(uid, []).append(path)
    missing = sorted(set(table) - set(files))
    if missing:
        raise ValueError(f"labelled series not found under {dicom_dir}: {', '.join(missing[:5])}")
    out = []
    for uid, paths in files.items():
        series = sort_slices([pydicom.dcmread(p) for p in paths])
        truth = {name: _label_index(series, table[uid][name], uid, name) for name in LANDMARKS}
        volume, trachea = _half_precision(*prepare_volumes(series_hu(series), pixel_spacing(series), crop, airway))
        out.append(LabelledSeries(uid, volume, context_offset(slice_spacing(series)), truth, trachea))
    return out


def _label_index(series: Sequence[pydicom.Dataset], value: str, uid: str, name: str) -> int:
    for i, ds in enumerate(series):
        if str(ds.SOPInstanceUID) == value:
            return i
    if value.isdigit():
        for i, ds in enumerate(series):
            if int(getattr(ds, "InstanceNumber", -1) or -1) == int(value):
                return i
    raise ValueError(f"series {uid}: {name} label {value!r} is neither a SOP Instance UID nor an Instance Number of it")


# --------------------------------------------------------------------------- training


def train(
    out_dir: Path,
    *,
    phantoms: int = 0,
    seed: int = 0,
    dicom_dir: Path | None = None,
    labels: Path | None = None,
    arch: str = "small",
    pretrained: Path | None = None,
    width: int = 16,
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
    import torch

    from models.chest_ct_landmarks.net import LandmarkNet

    say = log or (lambda _m: None)
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
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    from models.chest_ct_landmarks.net import SEPARATE_INPUT_VIEWS, default_views

    unknown = sorted(set(views or {}) - set(LANDMARKS))
    if unknown:
        raise ValueError(f"views for unknown landmark(s) {', '.join(unknown)} (choose from {', '.join(LANDMARKS)})")
    model = LandmarkNet(arch=arch, width=width, pretrained=pretrained,  # fails fast without timm
                        views={**default_views(arch), **(views or {})})
    airway = model.uses_airway
    t0 = time.perf_counter()
    data: list[LabelledSeries] = []
    n_styled = int(round(phantoms * styles))
    if n_styled:
        data += phantom_dataset(range(seed, seed + n_styled), slice_thickness=None, cache_dir=cache_dir, log=log,
                                family=family, styles=True, crop=crop, airway=airway)
    if phantoms - n_styled:
        data += phantom_dataset(range(seed + n_styled, seed + phantoms), slice_thickness=slice_thickness,
                                cache_dir=cache_dir, log=log, family=family, crop=crop, airway=airway)
    if dicom_dir is not None:
        data += dicom_dataset(Path(dicom_dir), Path(labels), crop=crop, airway=airway)  # type: ignore[arg-type]
    generation_s = time.perf_counter() - t0
    n_slices = sum(len(d.volume) for d in data)
    say(f"{len(data)} series, {n_slices} slices ready in {generation_s:.1f}s")

    reps = {**DEFAULT_REPEATS, **(repeats or {})}
    if set(reps) != set(LANDMARKS) or min(reps.values()) < 1:
        raise ValueError(f"repeats must give each of {', '.join(LANDMARKS)} at least 1 batch per step")
    opts = {n: torch.optim.AdamW(model.classifiers[n].parameters(), lr=learning_rate, weight_decay=1e-4)
            for n in LANDMARKS}
    total = epochs * steps_per_epoch
    scheds = {n: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=learning_rate, total_steps=total * reps[n],
                                                     pct_start=0.2)
              for n, o in opts.items()}
    start_epoch = 0
    ckpt_path = out_dir / "checkpoint.pt"
    if resume and ckpt_path.exists():
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
        rng = np.random.default_rng([seed, start_epoch])
        say(f"resumed from {ckpt_path} after epoch {start_epoch}")

    t1 = time.perf_counter()
    final: dict[str, float] = {n: float("nan") for n in LANDMARKS}
    model.train()
    for epoch in range(start_epoch, epochs):
        losses: dict[str, list[float]] = {n: [] for n in LANDMARKS}
        bar = _Progress(steps_per_epoch, f"epoch {epoch + 1}/{epochs}", log is not None)
        for step in range(steps_per_epoch):
            for name in (n for n in LANDMARKS for _ in range(reps[n])):
                x, y = _batch(data, name, batch_size, hard_fraction, rng,
                              airway=model.views[name] in SEPARATE_INPUT_VIEWS)
                xt = _augment(torch.from_numpy(x), rng, mode=augment)
                logits = model.classifiers[name](xt).reshape(-1)
                target = torch.from_numpy(y)
                weight = torch.where(target > 0.5, torch.tensor(1.0), torch.tensor(float(fp_weight)))
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, weight=weight)
                opts[name].zero_grad()
                loss.backward()
                opts[name].step()
                scheds[name].step()
                losses[name].append(float(loss.detach()))
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
    training_s = time.perf_counter() - t1

    model.eval()
    torch.save(model.state_dict(), out_dir / "model.pt")
    model_path = out_dir / "model.onnx"
    export_onnx(model, model_path)
    n_params = int(sum(p.numel() for p in model.parameters()))
    phantom_seeds = [seed, seed + phantoms - 1] if phantoms else []
    meta: dict[str, Any] = {
        "name": MODEL_NAME,
        "version": version or _dt.datetime.now(_dt.timezone.utc).strftime("phantom-%Y%m%d%H%M%S"),
        "device_uid": generate_uid(prefix=None),
        "arch": arch,
        "width": width,
        "views": dict(model.views),
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
        "trained_on": {
            "phantoms": phantoms,
            "family": family,
            "styled_phantoms": n_styled,
            "augment": augment,
            "seeds": phantom_seeds,
            "slice_thickness": slice_thickness,
            "real_series": len(data) - phantoms,
            "slices": n_slices,
            "epochs": epochs,
            "steps_per_epoch": steps_per_epoch,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "fp_weight": fp_weight,
            "hard_fraction": hard_fraction,
            "repeats": reps,
            "pretrained": str(pretrained) if pretrained else None,
            "parameters": n_params,
            "generation_seconds": round(generation_s, 1),
            "training_seconds": round(training_s, 1),
            "final_loss": {n: round(v, 5) for n, v in final.items()},
        },
        "metrics": {"test": None, "families": {}},
    }
    json_path = out_dir / "model.json"
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
    json_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    from models.chest_ct_landmarks.card import render_card

    (out_dir / "card.md").write_text(render_card(meta), encoding="utf-8")
    return TrainReport(
        out_dir=out_dir, model_path=model_path, json_path=json_path, series=len(data), epochs=epochs,
        steps=total, parameters=n_params, final_loss=final, generation_seconds=generation_s,
        training_seconds=training_s, test=test,
    )


def _batch(
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


AUGMENTATIONS: tuple[str, ...] = ("basic", "style", "texture")


def _blur(x: Any, sigma: float = 1.0) -> Any:
    """Separable Gaussian blur of a ``(N, C, H, W)`` batch, per channel."""
    import torch

    k = np.exp(-0.5 * (np.arange(-3, 4) / sigma) ** 2)
    k = torch.from_numpy((k / k.sum()).astype(np.float32))
    c = x.shape[1]
    kx = k.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = k.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    x = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (3, 3, 0, 0), mode="replicate"), kx, groups=c)
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 0, 3, 3), mode="replicate"), ky, groups=c)


_GEOMETRY: dict[str, tuple[float, tuple[float, float], float]] = {
    "basic": (8.0, (0.9, 1.1), 0.05),
    "style": (10.0, (0.6, 1.2), 0.08),
    "texture": (10.0, (0.85, 1.15), 0.08),
}
"""Per augmentation: rotation (degrees), scale range, shift (share of the image)."""


def _augment(x: Any, rng: np.random.Generator, mode: str = "basic") -> Any:
    """Random rotation, scale, shift, intensity gain/offset and noise on a batch.

    ``mode="style"`` widens the geometry (±10°, zoom 0.6-1.2, shift ±8 %) and adds what
    the phantom styles vary: blur or edge enhancement (a per-sample mix towards or away
    from a Gaussian-blurred copy), gamma, and noise that is white or correlated.
    ``mode="texture"`` adds the same intensity, sharpness and noise changes with a
    narrower zoom (0.85-1.15), for crops that do not widen with arms or pads.
    """
    import torch

    n = x.shape[0]
    rot, (s0, s1), sh = _GEOMETRY[mode]
    strong = mode != "basic"
    angle = torch.from_numpy(rng.uniform(-rot, rot, n) * np.pi / 180).float()
    scale = torch.from_numpy(rng.uniform(s0, s1, n)).float()
    shift = torch.from_numpy(rng.uniform(-sh, sh, (n, 2))).float()
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gain = torch.from_numpy(rng.uniform(0.9, 1.1, (n, 1, 1, 1))).float()
    bias = torch.from_numpy(rng.uniform(-0.04, 0.04, (n, 1, 1, 1))).float()
    sigma = torch.from_numpy(rng.uniform(0.0, 0.03, (n, 1, 1, 1))).float()
    if not strong:
        return (x * gain + bias + sigma * torch.randn_like(x)).clamp(0.0, 1.0)
    mix = torch.from_numpy(rng.uniform(-1.0, 1.0, (n, 1, 1, 1))).float()
    x = (x + mix * (_blur(x, float(rng.uniform(0.6, 1.4))) - x)).clamp(0.0, 1.0)
    gamma = torch.from_numpy(np.exp(rng.uniform(-0.25, 0.25, (n, 1, 1, 1)))).float()
    x = x.clamp_min(1e-4) ** gamma
    white = torch.randn_like(x)
    grainy = _blur(white, float(rng.uniform(0.6, 1.5)))
    grainy = grainy / grainy.std().clamp_min(1e-6)
    w = torch.from_numpy(rng.uniform(0.0, 1.0, (n, 1, 1, 1))).float()
    sigma = torch.from_numpy(rng.uniform(0.0, 0.05, (n, 1, 1, 1))).float()
    return (x * gain + bias + sigma * ((1 - w) * white + w * grainy)).clamp(0.0, 1.0)


def export_onnx(model: Any, path: Path) -> None:
    """Export a :class:`LandmarkNet` to ONNX (opset 17, dynamic batch axis; the input ``airway``
    too when a classifier reads it)."""
    extra = {AIRWAY_INPUT: (1, 3, AIRWAY_MATRIX, AIRWAY_MATRIX)} if model.uses_airway else None
    _export_onnx(model, (1, 3, MATRIX, MATRIX), path, input_name=INPUT_NAME, output_names=list(LANDMARKS),
                 extra_inputs=extra)


# --------------------------------------------------------------------------- evaluation


def evaluate_series(session: Any, item: LabelledSeries, batch_size: int = 32,
                    carina_window: Sequence[float] | None = None, diaphragm_pick: str = "argmax") -> dict[str, int]:
    """Run an onnxruntime session on one preprocessed series; landmark → picked index."""
    inputs = {INPUT_NAME: stack_context(item.volume, item.offset)}
    if AIRWAY_INPUT in {i.name for i in session.get_inputs()}:
        if item.airway is None:
            raise ValueError(f"{item.name}: the model reads the airway square and the series has none")
        inputs[AIRWAY_INPUT] = stack_context(item.airway, item.offset)
    n = len(inputs[INPUT_NAME])
    parts = [session.run(list(LANDMARKS), {k: v[i:i + batch_size] for k, v in inputs.items()})
             for i in range(0, n, batch_size)]
    outputs = {n: np.concatenate([p[k] for p in parts]) for k, n in enumerate(LANDMARKS)}
    return postprocess(outputs, carina_window=carina_window, diaphragm_pick=diaphragm_pick).picks


def evaluate(
    model_path: Path,
    data: Sequence[LabelledSeries],
    *,
    source: str = "",
    seed_range: list[int] | None = None,
    threads: int = 1,
    carina_window: Sequence[float] | None = None,
    diaphragm_pick: str = "argmax",
) -> EvalReport:
    """1-Up-Down precision and offset histogram per landmark of an ONNX model on ``data``
    (``carina_window``: see :func:`~models.chest_ct_landmarks.preprocess.postprocess`)."""
    t0 = time.perf_counter()
    session = _session(model_path, threads)
    offsets: dict[str, list[int]] = {n: [] for n in LANDMARKS}
    for item in tqdm(data, desc="evaluating", unit="series", leave=False, disable=None):
        picks = evaluate_series(session, item, carina_window=carina_window, diaphragm_pick=diaphragm_pick)
        for n in LANDMARKS:
            offsets[n].append(int(slice_offsets([picks[n]], [item.truth[n]])[0]))
    per = {
        n: {
            "one_up_down_precision": one_up_down_precision(offsets[n]),
            "exact": one_up_down_precision(offsets[n], tolerance=0),
            "within_2": one_up_down_precision(offsets[n], tolerance=2),
            "histogram": offset_histogram(offsets[n]),
            "mean_abs_offset": float(np.mean(np.abs(offsets[n]))) if offsets[n] else float("nan"),
        }
        for n in LANDMARKS
    }
    return EvalReport(source=source, n_series=len(data), per_landmark=per,
                      seconds=round(time.perf_counter() - t0, 1), seed_range=list(seed_range or []),
                      offsets=offsets, series=[d.name for d in data])


def _session(model_path: Path, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])


class _Progress:
    """A one-line text progress bar on stderr."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled = max(1, total), label, enabled and total > 0
        self.t0 = time.perf_counter()

    def update(self, done: int, extra: str = "") -> None:
        if not self.enabled:
            return
        width = 24
        filled = int(width * done / self.total)
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / max(done, 1) * (self.total - done)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                         f"{elapsed:.0f}s eta {eta:.0f}s {extra}   ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
