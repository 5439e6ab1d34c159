"""Calibrating and evaluating every pack's applicability check (``ainode models calibrate|eval``).

The statistics come from the pack's own preprocessing of phantoms (plain and styled, with
and without findings): ``fit`` phantoms give the centre, scale and shrunk covariance of the
descriptors (:mod:`node.packs.applicability`), ``val`` other phantoms give the threshold,
the 99th percentile of their scores. Their seeds (:data:`FIT_SEED_BASE`,
:data:`VAL_SEED_BASE`) are disjoint from the packs' training seeds (from 0) and from their
held-out evaluation seeds (:data:`HELD_OUT_SEED_BASE`), on which :func:`evaluate` measures
the in-domain rate; the rate on other inputs is measured on the other kinds' phantoms and
on real files from pydicom-data, nobody here made.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from pydicom import Dataset

from node.packs.applicability import METHOD, ApplicabilityCheck, describe_inputs, fit_statistics, threshold_for

__all__ = [
    "FIT_SEED_BASE", "HELD_OUT_SEED_BASE", "PHANTOM_KINDS", "VAL_SEED_BASE", "add_calibrate_arguments", "calibrate",
    "evaluate", "phantom_series", "radiograph_variants", "real_inputs", "run_calibrate", "run_eval",
]

FIT_SEED_BASE = 3_000_000
"""First seed of the phantoms the statistics are fitted on (plain; styled from +500 000)."""
VAL_SEED_BASE = 3_100_000
"""First seed of the validation phantoms that set the threshold (plain; styled from +500 000)."""
HELD_OUT_SEED_BASE = {"head-ct-hematoma": 1_000_000, "chest-ct-landmarks": 1_000_000, "cxr-nodule": 1_000_000,
                      "cxr-pneumonia": 1_100_000, "brain-mr": 1_000_000}
"""The packs' held-out evaluation seeds (their ``TEST_SEED_BASE``), where the in-domain rate is measured."""
_STYLED = 500_000

PHANTOM_KINDS = {"head-ct-hematoma": "head-ct", "chest-ct-landmarks": "chest-ct", "cxr-nodule": "cxr",
                 "cxr-pneumonia": "cxr", "brain-mr": "brain-mr"}
"""The phantom kind each pack is trained and validated on."""


def phantom_series(kind: str, seed: int, styled: bool) -> list[Dataset]:
    """The datasets of phantom ``kind`` for ``seed`` (about half of the seeds with findings)."""
    if kind == "head-ct":
        from models.phantoms.head_ct import generate_head_ct
        return generate_head_ct(seed, hematoma=seed % 2 == 0, styles=styled).datasets
    if kind == "chest-ct":
        from models.phantoms.chest_ct import generate_chest_ct
        return generate_chest_ct(seed, styles=styled).datasets
    if kind == "cxr":
        from models.phantoms.cxr import generate_cxr
        return [generate_cxr(seed, nodules=seed % 3, pneumonia=seed % 2 == 0, styles=styled,
                             photometric="MONOCHROME1" if seed % 5 == 0 else "MONOCHROME2").dataset]
    if kind == "brain-mr":
        from models.phantoms.brain_mr import generate_brain_mr
        return generate_brain_mr(seed, tumor=seed % 2 == 0, styles=styled).datasets
    raise KeyError(kind)


def _descriptors(pack: Any, kind: str, seeds: Iterable[int], styled: bool) -> np.ndarray:
    return np.array([describe_inputs(pack.preprocess(phantom_series(kind, s, styled))) for s in seeds])


def _seeds(base: int, count: int, styled: bool) -> list[int]:
    start = base + (_STYLED if styled else 0)
    return list(range(start, start + count))


def calibrate(name: str, weights: Path | None = None, fit: int = 16, val: int = 16,
              quantile: float = 0.99) -> dict[str, Any]:
    """The ``applicability`` block of pack ``name``: ``fit`` and ``val`` phantoms each, plain and styled."""
    from node.packs.registry import load_pack

    pack = load_pack(name, weights)
    kind = PHANTOM_KINDS[name]
    fit_rows = np.vstack([_descriptors(pack, kind, _seeds(FIT_SEED_BASE, fit, s), s) for s in (False, True)])
    stats = fit_statistics(fit_rows)
    check = ApplicabilityCheck(np.asarray(stats["centre"]), np.asarray(stats["scale"]),
                               np.asarray(stats["precision"]), 0.0)
    val_rows = np.vstack([_descriptors(pack, kind, _seeds(VAL_SEED_BASE, val, s), s) for s in (False, True)])
    scores = [check.distance(row) for row in val_rows]
    return {
        "method": METHOD, "input": None, "channel": 0, "threshold": round(threshold_for(scores, quantile), 4),
        "quantile": quantile, "statistics": stats,
        "phantoms": {"kind": kind, "fit": {"plain": _seeds(FIT_SEED_BASE, fit, False)[::max(fit - 1, 1)],
                                           "styled": _seeds(FIT_SEED_BASE, fit, True)[::max(fit - 1, 1)]},
                     "validation": {"plain": _seeds(VAL_SEED_BASE, val, False)[::max(val - 1, 1)],
                                    "styled": _seeds(VAL_SEED_BASE, val, True)[::max(val - 1, 1)]}},
        "validation_scores": {"median": round(float(np.median(scores)), 4), "max": round(float(max(scores)), 4)},
    }


def write_block(weights: Path, block: dict[str, Any]) -> Path:
    """Put ``block`` as ``applicability`` into the ``model.json`` beside ``weights``, keeping every other key."""
    path = Path(weights).with_suffix(".json")
    meta = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    meta["applicability"] = block
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


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
    parser.add_argument("--fit", type=int, default=16, help="phantoms the statistics are fitted on, plain and styled each")
    parser.add_argument("--val", type=int, default=16, help="validation phantoms that set the threshold, plain and styled each")


def run_calibrate(args: argparse.Namespace) -> int:
    """``ainode models calibrate NAME``: compute the block and write it into the weights' ``model.json``."""
    from node.packs.registry import load_pack

    started = time.perf_counter()
    block = calibrate(args.name, args.weights, fit=args.fit, val=args.val)
    path = write_block(load_pack(args.name, args.weights).model_path(), block)
    print(f"{args.name}: threshold {block['threshold']} (validation median {block['validation_scores']['median']},"
          f" max {block['validation_scores']['max']}) written to {path} in {time.perf_counter() - started:.0f} s")
    return 0


def run_eval(args: argparse.Namespace, name: str) -> int:
    """``ainode models eval NAME --applicability``: print :func:`evaluate` as JSON."""
    print(json.dumps(evaluate(name, getattr(args, "weights", None), held_out=args.applicability), indent=2))
    return 0

