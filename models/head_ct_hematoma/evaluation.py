"""Held-out evaluation of the head CT hematoma graph: series counts, ``min_patches``, reports.

Validation seeds start at :data:`VAL_SEED_BASE` (2,000,000), held-out test seeds at
:data:`TEST_SEED_BASE` (1,000,000); an even seed has hematomas.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from models.head_ct_hematoma.findings import CLASS_NAMES, HEMATOMA, HematomaFindings, SeriesCount
from models.head_ct_hematoma.preprocess import INPUT_NAME, OUTPUT_NAME, postprocess, preprocess
from models.head_ct_hematoma.families import generate, hematoma_type
from models.training import onnx_session, quiet, write_json

__all__ = [
    "TEST_SEED_BASE",
    "VAL_SEED_BASE",
    "EvalReport",
    "calibrate",
    "choose_min_patches",
    "count_series",
    "evaluate",
    "report_from_counts",
    "series_findings",
    "series_hematoma_counts",
]

TEST_SEED_BASE = 1_000_000
VAL_SEED_BASE = 2_000_000


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
    say = quiet(log)
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
    write_json(Path(json_path), meta)
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
    family: str = "a",
    types: dict[int, str] | None = None,
    min_probability: float = 0.0,
    series_count: SeriesCount = SeriesCount.TOTAL,
) -> list[tuple[int, bool, int]]:
    """Run the ONNX model on the phantoms of ``seeds`` in ``family`` (``styles``: family A with
    its randomised scanner and patient styles).

    Returns ``(seed, truly positive, predicted hematoma patches)`` per series; adds the
    patch confusion matrix (rows: truth, columns: prediction) into ``confusion`` and each
    seed's first hematoma type into ``types`` when given.
    """
    session = onnx_session(model_path, threads)
    out = []
    for s in tqdm(seeds, desc="evaluating", unit="phantom", leave=False, disable=None):
        phantom = generate("a-styled" if styles else family, int(s), slices)
        count = count_series(session, preprocess(phantom.datasets)[INPUT_NAME], phantom.patch_labels, confusion,
                             batch_size, min_probability, series_count)
        if types is not None:
            types[int(s)] = hematoma_type(phantom)
        out.append((int(s), phantom.has_hematoma, count))
    return out


def count_series(
    session: Any, image: np.ndarray, truth_patches: np.ndarray, confusion: np.ndarray | None = None,
    batch_size: int = 8, min_probability: float = 0.0, series_count: SeriesCount = SeriesCount.TOTAL,
) -> int:
    """Predicted hematoma patches (hematoma probability at least ``min_probability``; all, or the
    largest cluster's: ``series_count``) of one preprocessed series; its patch confusion (most
    probable class) added into ``confusion``."""
    return int(series_findings(session, image, truth_patches, confusion, batch_size, min_probability, series_count)
               .series_patch_count)


def series_findings(
    session: Any, image: np.ndarray, truth_patches: np.ndarray, confusion: np.ndarray | None = None,
    batch_size: int = 8, min_probability: float = 0.0, series_count: SeriesCount = SeriesCount.TOTAL,
) -> HematomaFindings:
    """The :class:`HematomaFindings` of one preprocessed series (``min_patches`` 1); its patch
    confusion (most probable class) added into ``confusion``."""
    logits = np.concatenate([
        session.run([OUTPUT_NAME], {INPUT_NAME: image[i:i + batch_size]})[0]
        for i in range(0, len(image), batch_size)
    ])
    findings = postprocess({OUTPUT_NAME: logits}, 1, min_probability, series_count)
    if confusion is not None:
        np.add.at(confusion, (truth_patches.ravel(), findings.patch_classes.ravel()), 1)
    return findings


def evaluate(
    model_path: Path,
    seeds: range | Sequence[int],
    min_patches: int,
    *,
    slices: int = 24,
    threads: int = 2,
    styles: bool = False,
    family: str = "a",
    types: dict[int, str] | None = None,
    min_probability: float = 0.0,
    series_count: SeriesCount = SeriesCount.TOTAL,
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
    min_probability:
        A patch counts when its hematoma probability is at least this (``model.json``'s
        ``min_probability``; 0: the most probable class alone).
    series_count:
        What ``min_patches`` is compared with (``model.json``'s ``series_count``).

    Returns
    -------
    EvalReport
    """
    t0 = time.perf_counter()
    confusion = np.zeros((len(CLASS_NAMES), len(CLASS_NAMES)), dtype=np.int64)
    counts = series_hematoma_counts(model_path, seeds, slices=slices, threads=threads, confusion=confusion,
                                    styles=styles, family=family, types=types, min_probability=min_probability,
                                    series_count=series_count)
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


def report_from_counts(
    counts: Sequence[tuple[int, bool, int]], min_patches: int, seconds: float = 0.0,
    confusion: np.ndarray | None = None,
) -> EvalReport:
    """An :class:`EvalReport` from series counts (seeds taken from the counts)."""
    return _report(counts, min_patches, [c[0] for c in counts], seconds, confusion)


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
        seeds=seeds, min_patches=int(min_patches), patch_accuracy=acc, per_class_recall=recall,
        hematoma_patch_precision=prec, hematoma_patch_recall=rec, series_sensitivity=sens, series_specificity=spec,
        n_series=len(counts), n_positive=n_pos, n_negative=n_neg, seconds=round(seconds, 1),
        series_counts=[(int(s), bool(t), int(c)) for s, t, c in counts],
    )
