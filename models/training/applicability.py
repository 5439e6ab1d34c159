"""Calibrating and evaluating every pack's applicability check (``ainode models calibrate|eval``).

The statistics come from the pack's own preprocessing of phantoms, plain and styled, with
and without findings (:mod:`node.packs.applicability`), and, for a pack whose weights are
trained on a second phantom family too (``--family-b N``), of that family. The threshold is
cross-validated: the phantoms are split into ``folds``; each is scored as a job (the whole
series, and parts of it: its first 3 and 8 slices, its middle and last 8, as series that cover
less arrive) by statistics fitted on the other folds, so every phantom is a validation phantom
once; the threshold is the 99th percentile of those out-of-fold scores as a modelled tail
with a margin for the number of phantoms (:func:`node.packs.applicability.tail_threshold`),
so that about 1 % of in-domain inputs exceed it however few phantoms it was chosen on; the
statistics written are then fitted on all of them. Their seeds (:data:`FIT_SEED_BASE`) are
disjoint from the packs' training seeds (from 0) and from their held-out evaluation seeds
(:data:`HELD_OUT_SEED_BASE`), on which :func:`evaluate` measures the in-domain rate; the rate
on other inputs is measured on the other kinds' phantoms and on real files from
pydicom-data, which nobody here made.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from pydicom import Dataset

from node.packs.applicability import (
    CONFIDENCE, FEATURES, METHOD, TAIL, ApplicabilityCheck, describe_slices, fit_statistics, stable_features,
    tail_threshold, threshold_for,
)

__all__ = [
    "FAMILY_B", "FIT_SEED_BASE", "HELD_OUT_SEED_BASE", "PHANTOM_KINDS", "add_calibrate_arguments", "calibrate",
    "evaluate", "phantom_series", "radiograph_variants", "real_inputs", "run_calibrate", "run_eval",
]

FIT_SEED_BASE = 3_000_000
"""First seed of the calibration phantoms (plain; styled from +500 000)."""
HELD_OUT_SEED_BASE = {"head-ct-hematoma": 1_000_000, "chest-ct-landmarks": 1_000_000, "cxr-nodule": 1_000_000,
                      "cxr-pneumonia": 1_100_000, "brain-mr": 1_000_000}
"""The packs' held-out evaluation seeds (their ``TEST_SEED_BASE``), where the in-domain rate is measured."""
_STYLED = 500_000

PHANTOM_KINDS = {"head-ct-hematoma": "head-ct", "chest-ct-landmarks": "chest-ct", "cxr-nodule": "cxr",
                 "cxr-pneumonia": "cxr", "brain-mr": "brain-mr"}
"""The phantom kind each pack is trained and validated on."""
FAMILY_B = {"head-ct-hematoma": "head-ct-b", "chest-ct-landmarks": "chest-ct-b"}
"""The second, independently written phantom family of a pack's kind (styles are its own; seeds as family A's)."""


def phantom_series(kind: str, seed: int, styled: bool) -> list[Dataset]:
    """The datasets of phantom ``kind`` for ``seed`` (about half of the seeds with findings; a
    family-B kind draws its own style and ignores ``styled``)."""
    if kind == "head-ct-b":
        from models.phantoms.head_ct_b import generate_head_ct_b
        return generate_head_ct_b(seed, hematoma=seed % 2 == 0).datasets
    if kind == "chest-ct-b":
        from models.phantoms.chest_ct_b import generate_chest_ct_b
        return generate_chest_ct_b(seed).datasets
    if kind == "head-ct":
        from models.phantoms.head_ct import generate_head_ct
        return generate_head_ct(seed, hematoma=seed % 2 == 0, styles=styled).datasets
    if kind == "chest-ct":
        from models.phantoms.chest_ct import generate_chest_ct
        return generate_chest_ct(seed, styles=styled).datasets
    if kind == "cxr":  # half of them at 1024 pixels, the detector sizes of real CRs and DXs (issue 33)
        from models.phantoms.cxr import generate_cxr
        return [generate_cxr(seed, size=1024 if seed % 4 >= 2 else 512, nodules=seed % 3, pneumonia=seed % 2 == 0,
                             styles=styled, photometric="MONOCHROME1" if seed % 5 == 0 else "MONOCHROME2").dataset]
    if kind == "brain-mr":
        from models.phantoms.brain_mr import generate_brain_mr
        return generate_brain_mr(seed, tumor=seed % 2 == 0, styles=styled).datasets
    raise KeyError(kind)


def _descriptors(pack: Any, kind: str, seeds: Iterable[int], styled: bool) -> list[np.ndarray]:
    """Each phantom's slice descriptors (one matrix per phantom)."""
    return [describe_slices(pack.preprocess(phantom_series(kind, s, styled))) for s in seeds]


def _parts(n: int) -> list[slice]:
    """The whole of an ``n``-slice series and the parts of it a job may cover."""
    parts = [slice(0, n)]
    if n > 8:
        middle = (n - 8) // 2
        parts += [slice(0, 3), slice(0, 8), slice(middle, middle + 8), slice(n - 8, n)]
    return parts


def _seeds(base: int, count: int, styled: bool) -> list[int]:
    start = base + (_STYLED if styled else 0)
    return list(range(start, start + count))


def calibrate(name: str, weights: Path | None = None, phantoms: int = 30, folds: int = 5,
              quantile: float = 0.99, family_b: int = 0) -> dict[str, Any]:
    """The ``applicability`` block of pack ``name`` from ``phantoms`` plain and ``phantoms`` styled
    phantoms (and ``family_b`` phantoms of its second family, :data:`FAMILY_B`)."""
    from node.packs.registry import load_pack

    pack = load_pack(name, weights)
    kind = PHANTOM_KINDS[name]
    if family_b and name not in FAMILY_B:
        raise SystemExit(f"{name}: no second phantom family (--family-b is for {', '.join(sorted(FAMILY_B))})")
    series = [*_descriptors(pack, kind, _seeds(FIT_SEED_BASE, phantoms, False), False),
              *_descriptors(pack, kind, _seeds(FIT_SEED_BASE, phantoms, True), True)]
    if family_b:
        series += _descriptors(pack, FAMILY_B[name], _seeds(FIT_SEED_BASE, family_b, False), False)
    seeds = {"kind": kind, "plain": [FIT_SEED_BASE, FIT_SEED_BASE + phantoms - 1],
             "styled": [FIT_SEED_BASE + _STYLED, FIT_SEED_BASE + _STYLED + phantoms - 1], "folds": folds}
    if family_b:
        seeds["family_b"] = [FIT_SEED_BASE, FIT_SEED_BASE + family_b - 1]
    return {"method": METHOD, "input": None, "channel": 0, **calibrate_descriptors(series, folds, quantile),
            "phantoms": seeds}


def calibrate_descriptors(series: Sequence[np.ndarray], folds: int = 5, quantile: float = 0.99) -> dict[str, Any]:
    """The features, threshold and statistics of calibration ``series`` (one matrix of slice
    descriptors per phantom): out-of-fold job scores, their tail threshold, statistics of all."""
    keep = stable_features(np.vstack(series))
    series = [rows[:, keep] for rows in series]
    scores = []
    for k in range(folds):
        others = [rows for j, rows in enumerate(series) if j % folds != k]
        check = ApplicabilityCheck.from_statistics(fit_statistics(np.vstack(others), seed=k))
        scores += [check.distance(rows[part]) for j, rows in enumerate(series) if j % folds == k
                   for part in _parts(len(rows))]
    return {
        "features": [FEATURES[i] for i in keep],
        "threshold": round(tail_threshold(scores, len(series), quantile), 4), "quantile": quantile,
        "rule": {"tail": TAIL, "confidence": CONFIDENCE, "phantoms": len(series)},
        "statistics": fit_statistics(np.vstack(series)),
        "validation_scores": {"jobs": len(scores), "median": round(float(np.median(scores)), 4),
                              "p99": round(threshold_for(scores, quantile), 4),
                              "max": round(float(np.max(scores)), 4)},
    }


def write_block(weights: Path, block: dict[str, Any]) -> Path:
    """Put ``block`` as ``applicability`` into the ``model.json`` beside ``weights``, keeping every other key.

    The block's numbers are rounded to 6 significant digits and each list of numbers is written
    on one line.
    """
    path = Path(weights).with_suffix(".json")
    meta = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    meta["applicability"] = _rounded(block)
    text = json.dumps(meta, indent=2)
    head, _, tail = text.rpartition('"applicability": ')
    tail = re.sub(r"\[\s*(-?[\d.eE+-]+(?:,\s*-?[\d.eE+-]+)*)\s*\]",
                  lambda m: "[" + ", ".join(m.group(1).replace(",", " ").split()) + "]", tail)
    path.write_text(head + '"applicability": ' + tail + "\n", encoding="utf-8")
    return path


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def radiograph_variants(ds: Dataset) -> dict[str, Dataset]:
    """A real radiograph as sent (``as-is``), as DX, turned, cropped and at other resolutions."""
    import copy

    from pydicom.uid import ExplicitVRLittleEndian

    pixels = ds.pixel_array
    out: dict[str, Dataset] = {"as-is": ds}

    def variant(array: np.ndarray, dx: bool = False) -> Dataset:
        new = copy.deepcopy(ds)
        array = np.ascontiguousarray(array.astype(pixels.dtype))
        new.Rows, new.Columns = array.shape
        new.PixelData = array.tobytes()
        new.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        if dx:
            new.SOPClassUID = new.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
            new.Modality = "DX"
            new.PresentationIntentType = "FOR PRESENTATION"
        return new

    h, w = pixels.shape
    out["dx"] = variant(pixels, dx=True)
    out["rotated-90"] = variant(np.rot90(pixels))
    out["rotated-180"] = variant(np.rot90(pixels, 2))
    out["crop-centre"] = variant(pixels[h // 4: 3 * h // 4, w // 4: 3 * w // 4])
    out["crop-top"] = variant(pixels[: h // 2])
    out["half-resolution"] = variant(pixels[::2, ::2])
    out["quarter-resolution"] = variant(pixels[::4, ::4])
    return out


def real_inputs() -> dict[str, list[Dataset]]:
    """Real files from pydicom-data (each a one-image series, except the variants of the CR)."""
    import pydicom
    from pydicom.data import get_testdata_file

    found: dict[str, list[Dataset]] = {}
    cr = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))
    cr.BodyPartExamined = cr.get("BodyPartExamined") or "CHEST"
    for label, ds in radiograph_variants(cr).items():
        found[f"RG1 CR {label}"] = [ds]
    for name in ("RG1_J2KR.dcm", "CT_small.dcm", "MR_small.dcm", "693_UNCR.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"):
        path = get_testdata_file(name)
        if path:
            found[name] = [pydicom.dcmread(path)]
    return found


def _rate(pack: Any, series: Iterable[Sequence[Dataset]], check: ApplicabilityCheck) -> dict[str, Any]:
    """How many of ``series`` the check scores out of domain (and how many the pack refused to preprocess)."""
    scores, refused = [], 0
    for datasets in series:
        try:
            inputs = pack.preprocess(list(datasets))
        except Exception:
            refused += 1
            continue
        scores.append(check.score(inputs))
    out = sum(s > check.threshold for s in scores)
    return {"n": len(scores), "out_of_domain": int(out), "rate": round(out / len(scores), 4) if scores else None,
            "refused": refused, "median_score": round(float(np.median(scores)), 3) if scores else None}


def evaluate(name: str, weights: Path | None = None, held_out: int = 20, others: int = 4) -> dict[str, Any]:
    """The in-domain rate on ``held_out`` held-out phantoms (plain and styled) and the rate on other inputs."""
    from node.packs.registry import load_pack

    pack = load_pack(name, weights)
    check = pack.applicability
    if check is None:
        raise SystemExit(f"{name}: its model.json has no applicability block (run: ainode models calibrate {name})")
    kind, base = PHANTOM_KINDS[name], HELD_OUT_SEED_BASE[name]
    report: dict[str, Any] = {"model": name, "threshold": check.threshold, "in_domain": {}, "other_phantoms": {},
                              "real_files": {}}
    for styled in (False, True):
        seeds = _seeds(base, held_out, styled)
        report["in_domain"]["styled" if styled else "plain"] = _rate(
            pack, (phantom_series(kind, s, styled) for s in seeds), check)
    if name in FAMILY_B:  # the second family's held-out seeds: in the domain once calibrated with --family-b
        report["in_domain"]["family b"] = _rate(
            pack, (phantom_series(FAMILY_B[name], s, False) for s in _seeds(base, held_out, False)), check)
    for other in sorted(set(PHANTOM_KINDS.values()) - {kind}):
        report["other_phantoms"][other] = _rate(
            pack, (phantom_series(other, s, s % 2 == 1) for s in _seeds(base, others, False)), check)
    for label, datasets in real_inputs().items():
        report["real_files"][label] = _rate(pack, [datasets], check)
    real = [r for r in report["real_files"].values() if r["n"]]
    report["real_files_out_of_domain"] = f"{sum(r['out_of_domain'] for r in real)}/{len(real)}"
    return report


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ainode models calibrate NAME``."""
    parser.add_argument("name", help="the pack (head-ct-hematoma, chest-ct-landmarks, cxr-nodule, cxr-pneumonia, brain-mr)")
    parser.add_argument("--weights", type=Path, help="model.onnx whose model.json gets the block (default: the demo weights)")
    parser.add_argument("--phantoms", type=int, default=30, help="calibration phantoms, plain and styled each (default 30)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds that set the threshold (default 5)")
    parser.add_argument("--family-b", type=int, default=0, metavar="N",
                        help="also N phantoms of the pack's second family (head-ct-hematoma, chest-ct-landmarks; seeds "
                             f"{FIT_SEED_BASE:,}..): when its weights are trained on that family (default 0)")


def run_calibrate(args: argparse.Namespace) -> int:
    """``ainode models calibrate NAME``: compute the block and write it into the weights' ``model.json``."""
    from node.packs.registry import load_pack

    started = time.perf_counter()
    block = calibrate(args.name, args.weights, phantoms=args.phantoms, folds=args.folds, family_b=args.family_b)
    path = write_block(load_pack(args.name, args.weights).model_path(), block)
    scores = block["validation_scores"]
    print(f"{args.name}: threshold {block['threshold']} (validation median {scores['median']}, 99th percentile"
          f" {scores['p99']}, max {scores['max']}) written to {path} in {time.perf_counter() - started:.0f} s")
    return 0


def run_eval(args: argparse.Namespace, name: str) -> int:
    """``ainode models eval NAME --applicability``: print :func:`evaluate` as JSON."""
    print(json.dumps(evaluate(name, getattr(args, "weights", None), held_out=args.applicability), indent=2))
    return 0

