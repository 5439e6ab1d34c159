"""Head CT hematoma on two phantom families: training on either or both, the series threshold
chosen on the trained families' validation phantoms, the held-out figures per family and
per hematoma type, and the cross-family table of the model card.

Seeds, in every family (a family-B phantom shares nothing with family A's of the same seed;
an even seed has hematomas):

* training: a plan, family -> seed range, all below :data:`TEST_SEED_BASE`;
* validation (``min_patches`` and ``min_probability``): ``VAL_SEED_BASE .. + VAL_PHANTOMS - 1``;
* held-out: ``TEST_SEED_BASE .. + TEST_PHANTOMS - 1`` (40 positive, 40 negative).

``source(family, seed)`` makes a phantom; the default, :func:`.families.generate`, is what
``ainode models eval head-ct-hematoma --family F`` uses. Any source must give the same
phantoms (a cache of them, for instance): the figures are the phantoms', not the source's.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from pydicom.uid import generate_uid

from models.head_ct_hematoma.evaluation import (
    TEST_SEED_BASE, VAL_SEED_BASE, choose_min_patches, count_series, report_from_counts, series_findings,
)
from models.head_ct_hematoma.families import generate, hematoma_type
from models.head_ct_hematoma.hard_crops import mine
from models.head_ct_hematoma.findings import CLASS_NAMES, SeriesCount, largest_cluster
from models.head_ct_hematoma.preprocess import INPUT_NAME, OUTPUT_NAME, preprocess, window
from models.head_ct_hematoma.train import MODEL_NAME, class_weights, fit
from models.head_ct_hematoma.training_data import sample_slices
from models.training import export_onnx, onnx_session, output_folder, quiet, save_weights, seed_torch, write_json

__all__ = [
    "MIN_PROBABILITIES", "SERIES_COUNTS", "TEST_PHANTOMS", "VAL_PHANTOMS", "choose_threshold", "evaluate_family", "family_metrics",
    "family_probabilities", "model_json", "per_type", "seed_span", "test_seeds", "train_and_calibrate", "train_families",
    "val_seeds", "write_model_json",
]

TEST_PHANTOMS = 80
VAL_PHANTOMS = 40
MIN_PROBABILITIES = (0.0, 0.5, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999)
"""The patch probability cuts :func:`choose_threshold` tries (0: the most probable class alone)."""
SERIES_COUNTS = (SeriesCount.LARGEST_CLUSTER, SeriesCount.TOTAL)
"""The counts :func:`choose_threshold` tries, in the order it prefers among equals: the largest
cluster first (one region is what a bleed is; stray patches cannot add up to it)."""
Source = Callable[[str, int], Any]


def test_seeds(n: int = TEST_PHANTOMS) -> range:
    """Held-out seeds of every family."""
    return range(TEST_SEED_BASE, TEST_SEED_BASE + n)


def val_seeds(n: int = VAL_PHANTOMS) -> range:
    """Validation seeds of every family."""
    return range(VAL_SEED_BASE, VAL_SEED_BASE + n)


def _source(family: str, seed: int) -> Any:
    return generate(family, seed)


def _network_input(phantom: Any) -> np.ndarray:
    """The ONNX input of a phantom: its DICOM preprocessed, or (a phantom kept without DICOM) its
    HU windowed, which is what the preprocessing returns for that DICOM."""
    datasets = getattr(phantom, "datasets", None)
    return preprocess(datasets)[INPUT_NAME] if datasets else window(phantom.hu)


def family_counts(
    model_path: Path, family: str, seeds: Sequence[int], source: Source = _source, confusion: np.ndarray | None = None,
    min_probability: float = 0.0, series_count: SeriesCount = SeriesCount.TOTAL,
) -> tuple[list[tuple[int, bool, int]], dict[int, str]]:
    """``(seed, truly positive, predicted hematoma patches)`` per phantom and each seed's hematoma type."""
    session = onnx_session(model_path, 2)
    counts, types = [], {}
    for s in seeds:
        phantom = source(family, int(s))
        counts.append((int(s), bool(phantom.has_hematoma),
                       count_series(session, _network_input(phantom), phantom.patch_labels, confusion,
                                    min_probability=min_probability, series_count=series_count)))
        types[int(s)] = hematoma_type(phantom)
    return counts, types


def family_probabilities(
    model_path: Path, family: str, seeds: Sequence[int], source: Source = _source,
) -> list[tuple[int, bool, np.ndarray]]:
    """``(seed, truly positive, hematoma probability of each patch whose most probable class is
    hematoma, 0 elsewhere)`` per phantom: the counts at every probability cut from one pass."""
    session = onnx_session(model_path, 2)
    out = []
    for s in seeds:
        phantom = source(family, int(s))
        findings = series_findings(session, _network_input(phantom), phantom.patch_labels)
        out.append((int(s), bool(phantom.has_hematoma),
                    np.where(findings.candidate_mask, findings.hematoma_probability, 0.0).astype(np.float32)))
    return out


def per_type(counts: Sequence[tuple[int, bool, int]], types: Mapping[int, str], min_patches: int) -> dict[str, Any]:
    """Per hematoma type (``none``: the negatives): series, series called positive, and their rate."""
    out: dict[str, Any] = {}
    for seed, _, count in counts:
        row = out.setdefault(types[seed], {"n": 0, "called": 0})
        row["n"] += 1
        row["called"] += int(count >= min_patches)
    for row in out.values():
        row["rate"] = round(row["called"] / row["n"], 4)
    return dict(sorted(out.items()))


def evaluate_family(
    model_path: Path, family: str, min_patches: int, seeds: Sequence[int] | None = None, source: Source = _source,
    min_probability: float = 0.0, series_count: SeriesCount = SeriesCount.TOTAL,
) -> dict[str, Any]:
    """Held-out figures of one family: the :class:`EvalReport` summary, per type, the series counts."""
    seeds = list(seeds if seeds is not None else test_seeds())
    t0 = time.perf_counter()
    confusion = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), dtype=np.int64)
    counts, types = family_counts(model_path, family, seeds, source, confusion, min_probability, series_count)
    report = report_from_counts(counts, min_patches, time.perf_counter() - t0, confusion)
    return {**report.summary(), "min_probability": float(min_probability),
            "series_count": SeriesCount(series_count).value, "family": family,
            "per_type": per_type(counts, types, min_patches),
            "series_counts": {str(s): c for s, _, c in counts},
            "false_positive_seeds": [s for s, t, c in counts if not t and c >= min_patches],
            "missed_seeds": [s for s, t, c in counts if t and c < min_patches]}


def choose_threshold(
    model_path: Path, families: Sequence[str], seeds: Sequence[int] | None = None, source: Source = _source,
    probabilities: Sequence[float] = MIN_PROBABILITIES, series_counts: Sequence[SeriesCount] = SERIES_COUNTS,
) -> tuple[int, float, dict[str, Any]]:
    """``min_patches``, ``min_probability`` and ``series_count`` chosen on the validation phantoms
    of ``families`` together, and their figures (``series_count`` is in them).

    For each count of ``series_counts`` and each probability cut of ``probabilities`` the
    patch count threshold is chosen by :func:`.evaluation.choose_min_patches`; the pair whose
    threshold gives the highest sensitivity + specificity wins (the first count, then the
    lowest cut, among equals).
    """
    seeds = list(seeds if seeds is not None else val_seeds())
    maps: list[tuple[int, bool, np.ndarray]] = []
    for family in families:
        maps += family_probabilities(model_path, family, seeds, source)
    best: tuple[float, int, float, SeriesCount] | None = None
    for how in series_counts:
        for q in sorted(probabilities):
            counts = _counts_at(maps, q, how)
            k = choose_min_patches(counts)
            report = report_from_counts(counts, k)
            score = report.series_sensitivity + report.series_specificity
            if best is None or score > best[0] + 1e-9:
                best = (score, k, float(q), SeriesCount(how))
    assert best is not None
    _, min_patches, min_probability, how = best
    summary = report_from_counts(_counts_at(maps, min_probability, how), min_patches).summary()
    return min_patches, min_probability, {**summary, "min_probability": min_probability, "series_count": how.value,
                                          "families": list(families)}


def _counts_at(
    maps: Sequence[tuple[int, bool, np.ndarray]], q: float, how: SeriesCount = SeriesCount.TOTAL,
) -> list[tuple[int, bool, int]]:
    """Series counts of :func:`family_probabilities` maps at the probability cut ``q`` (0: every
    candidate): all candidates, or the largest cluster's (``how``)."""
    masks = [(s, t, m >= q if q > 0 else m > 0) for s, t, m in maps]
    if SeriesCount(how) is SeriesCount.LARGEST_CLUSTER:
        return [(s, t, largest_cluster(m)) for s, t, m in masks]
    return [(s, t, int(m.sum())) for s, t, m in masks]


def plan_slices(
    plan: Mapping[str, Sequence[int]], rng: np.random.Generator, extra: int = 8, source: Source = _source,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Training slices of every family in ``plan`` (family -> seeds)."""
    hu_out: list[np.ndarray] = []
    lab_out: list[np.ndarray] = []
    for family, seeds in plan.items():
        if seeds and (min(seeds) < 0 or max(seeds) >= TEST_SEED_BASE):
            raise ValueError(f"training seeds must lie in 0..{TEST_SEED_BASE - 1}")
        for s in seeds:
            phantom = source(family, int(s))
            hu, labels = sample_slices(phantom.hu, phantom.patch_labels, extra, rng)
            hu_out += hu
            lab_out += labels
    return hu_out, lab_out


def seed_span(seeds: Sequence[int]) -> list[int]:
    """``[first, last]`` of a run of consecutive seeds; every seed, in order, otherwise."""
    ordered = sorted(int(s) for s in seeds)
    return [ordered[0], ordered[-1]] if ordered == list(range(ordered[0], ordered[-1] + 1)) else ordered


def train_families(
    out_dir: Path, plan: Mapping[str, Sequence[int]], *, epochs: int, init: Path | None = None, seed: int = 0,
    learning_rate: float = 3e-3, batch_size: int = 8, source: Source = _source, log: Any = None,
    hard_crops_from: Path | None = None, hard_crops_per_phantom: tuple[int, int] = (6, 4),
) -> dict[str, Any]:
    """Train on the families of ``plan`` (from ``init``, a ``model.pt``, when given; with the hard
    crops ``hard_crops_from`` finds in them), export ``model.onnx`` and ``model.pt``;
    ``trained_on`` for ``model.json``."""
    say = quiet(log)
    out_dir = output_folder(out_dir)
    rng = seed_torch(seed, 2)
    t0 = time.perf_counter()
    hu, labels = plan_slices(plan, rng, source=source)
    fp, weak = hard_crops_per_phantom
    crops = mine(hard_crops_from, plan, source, false_positives=fp, weak=weak) if hard_crops_from is not None else []
    hu += [c.hu for c in crops]
    labels += [c.labels for c in crops]
    generation_s = time.perf_counter() - t0
    say(f"{len(hu)} training slices and crops ({len(crops)} hard crops) from {sum(len(r) for r in plan.values())} "
        f"phantoms in {generation_s:.0f}s")
    weights = class_weights(labels)
    t1 = time.perf_counter()
    model, final_loss = fit(hu, labels, weights, rng, epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate, say=say, init=init)
    export_onnx(model, (1, 2, 512, 512), out_dir / "model.onnx", input_name=INPUT_NAME, output_names=[OUTPUT_NAME])
    save_weights(model, out_dir / "model.pt")
    return {
        "data": "models.head_ct_hematoma.families (even seed: hematoma)",
        "families": {family: seed_span(r) for family, r in plan.items() if r},
        "initialised_from": str(init) if init else None,
        "hard_crops": ({"from": str(hard_crops_from), "per_phantom": [fp, weak], "crops": len(crops)}
                       if hard_crops_from is not None else None),
        "slices_used": len(hu), "epochs": epochs, "learning_rate": learning_rate,
        "class_weights": [round(float(w), 4) for w in weights],
        "generation_seconds": round(generation_s, 1), "training_seconds": round(time.perf_counter() - t1, 1),
        "final_loss": round(final_loss, 5),
    }


def model_json(
    previous: Mapping[str, Any], version: str, trained_on: Mapping[str, Any], min_patches: int,
    metrics: Mapping[str, Any], min_probability: float = 0.0, series_count: SeriesCount = SeriesCount.TOTAL,
) -> dict[str, Any]:
    """The new ``model.json``: every key of ``previous`` kept (an ``applicability`` block, say) except
    those the new weights replace; the previous weights' figures under ``previous_weights``."""
    meta = dict(previous)
    meta["previous_weights"] = {k: previous.get(k)
                                for k in ("version", "device_uid", "min_patches", "min_probability", "series_count",
                                          "trained_on")}
    meta["previous_weights"]["metrics"] = previous.get("metrics")
    trained_on = dict(trained_on)
    families = trained_on.get("families", {})
    if "a" in families:
        trained_on["seeds"] = families["a"]
    if "a-styled" in families:
        trained_on["styled_seeds"] = families["a-styled"]
    meta.update({"name": MODEL_NAME, "version": version, "device_uid": generate_uid(prefix=None),
                 "min_patches": int(min_patches), "min_probability": float(min_probability),
                 "series_count": SeriesCount(series_count).value, "trained_on": trained_on,
                 "metrics": dict(metrics)})
    return meta


def write_model_json(path: Path, meta: Mapping[str, Any]) -> Path:
    """Write ``meta`` as ``model.json``."""
    return write_json(Path(path), json.loads(json.dumps(meta, default=str)))


def train_and_calibrate(
    out_dir: Path, plan: Mapping[str, Sequence[int]], *, epochs: int, init: Path | None = None, learning_rate: float = 3e-3,
    val_families: Sequence[str] = ("a", "a-styled", "b"), test_families: Sequence[str] = ("a", "a-styled", "b"),
    val_n: int = VAL_PHANTOMS, test_n: int = TEST_PHANTOMS, version: str = "phantom",
    previous_json: Path | None = None, source: Source = _source, log: Any = None, hard_crops_from: Path | None = None,
    hard_crops_per_phantom: tuple[int, int] = (6, 4),
) -> dict[str, Any]:
    """Train on ``plan`` (with the hard crops that ``hard_crops_from``, an ONNX graph, finds in
    it: :mod:`.hard_crops`), choose the series rule on the validation phantoms of
    ``val_families`` together, evaluate the held-out phantoms of ``test_families``, write
    ``model.json`` (keeping ``previous_json``'s other keys); the new ``model.json`` as a dict."""
    say = quiet(log)
    trained_on = train_families(out_dir, plan, epochs=epochs, init=init, learning_rate=learning_rate, source=source,
                                log=log, hard_crops_from=hard_crops_from, hard_crops_per_phantom=hard_crops_per_phantom)
    model = Path(out_dir) / "model.onnx"
    min_patches, min_probability, validation = choose_threshold(model, val_families, val_seeds(val_n), source)
    how = SeriesCount(validation["series_count"])
    say(f"min_patches {min_patches} ({how.value}), min_probability {min_probability} on {', '.join(val_families)}")
    tests = {family: evaluate_family(model, family, min_patches, test_seeds(test_n), source, min_probability, how)
             for family in test_families}
    previous = json.loads(Path(previous_json).read_text(encoding="utf-8")) if previous_json else {}
    meta = model_json(previous, version, trained_on, min_patches, family_metrics(validation, tests),
                      min_probability=min_probability, series_count=how)
    write_model_json(Path(out_dir) / "model.json", meta)
    return meta


def family_metrics(validation: Mapping[str, Any], tests: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``model.json``'s ``metrics``: ``test`` (family A plain), ``test_styled`` and ``test_b`` as the
    node's tests and the card read them."""
    names = {"a": "test", "a-styled": "test_styled", "b": "test_b"}
    return {"validation": dict(validation), **{names[f]: dict(r) for f, r in tests.items()}}
