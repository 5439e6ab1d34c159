"""Every image file of pydicom's test data and pydicom-data through the pipeline.

Real DICOM written by others: every transfer syntax pydicom ships, enhanced multi-frame
objects, CR without spacing, odd matrices. Each file is routed by Modality to the pack
that takes it (CT → head CT, MR → brain MR, CR/DX → CXR nodule); a file no pack takes
is *ignored* (with its modality). A file routed to a pack yields results, or fails with
a stage and a deliberate reason (``ValueError``/``NotImplementedError`` naming what is
missing): never a crash-type error (``AttributeError``, ``ZeroDivisionError``, ...).
Every result that exists passes ``dciodvfy`` without errors the source does not have.
"""
from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path

import pydicom
from pydicom.data import data_manager

from node.worker import JobSpec, run_job
from tests.dicom_validation import dciodvfy_errors, dciodvfy_output

PACK_FOR_MODALITY = {"CT": "head-ct-hematoma", "MR": "brain-mr", "CR": "cxr-nodule", "DX": "cxr-nodule"}
DELIBERATE = ("ValueError", "NotImplementedError")
"""Exception types a pack raises on purpose, with a message naming what the input lacks."""
_INPUT_ERROR = re.compile(r"^[A-Z][\w' ()-]* \([0-9A-F]{4},[0-9A-F]{4}\) ")
"""Or an input checked at load (issue 35): the attribute's name and tag, then what is wrong with it."""


def _corpus() -> list[Path]:
    """The files on disk (no download): pydicom's ``test_files`` and every external data source (pydicom-data)."""
    roots = [Path(data_manager.DATA_ROOT) / "test_files"]
    roots += [Path(source.data_path) for source in data_manager.external_data_sources().values()]
    assert len(roots) > 1, "pydicom-data (a dev dependency) is installed"
    skipped_suffixes = {".py", ".txt", ".json", ".gz", ".bz2", ".zip", ".xz", ".jpg", ".png", ".npy", ".j2k", ".jls",
                        ".md", ".pyc"}
    files = {f.resolve() for root in roots for f in root.rglob("*") if f.is_file()}
    return sorted((f for f in files if f.suffix.lower() not in skipped_suffixes), key=lambda f: f.name)


def _classify(path: Path) -> tuple[str, str | None]:
    """``(what, pack)``: the modality (or why the file is not an image) and the pack it goes to."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            pixels = "PixelData" in pydicom.dcmread(path, specific_tags=["PixelData"])
            modality = str(ds.get("Modality", "") or "none")
    except Exception as exc:
        return f"not DICOM ({type(exc).__name__})", None
    if not pixels:
        return f"{modality} without pixel data", None
    return modality, PACK_FOR_MODALITY.get(modality)


def _source_errors(path: Path) -> set[str]:
    return {line.split(" - ", 1)[-1] for line in dciodvfy_output(path) if line.startswith("Error")}


_MISSING = re.compile(r"(\w+)\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)> - Missing attribute")


def _carried_over(line: str, source_errors: set[str], source: pydicom.Dataset) -> bool:
    """Whether a result's dciodvfy error comes from the source: the same error, or an attribute the source lacks."""
    if line.split(" - ", 1)[-1] in source_errors:
        return True
    missing = _MISSING.search(line)
    return bool(missing) and not source.get(missing.group(1))


def test_every_real_image_yields_results_or_a_clear_reason(tmp_path: Path):
    corpus = _corpus()
    assert len(corpus) > 100, "pydicom's test data and pydicom-data are installed"
    table: list[tuple[str, str, str, str]] = []
    problems: list[str] = []
    outcomes: Counter[str] = Counter()
    for number, path in enumerate(corpus):
        what, pack = _classify(path)
        if pack is None:
            table.append((path.name, what, "-", "ignored"))
            outcomes["ignored"] += 1
            continue
        out = tmp_path / f"{number}"
        outcome = run_job(JobSpec(number, pack, pack, None, "onnxruntime-cpu", None, (str(path),), str(out),
                                  f"1.2.826.0.1.3680043.10.1.{number}"))
        if not outcome.ok:
            outcomes["failed"] += 1
            table.append((path.name, what, pack, f"{outcome.stage.value}: {outcome.reason}"))
            if not outcome.reason or outcome.stage is None or not (outcome.reason.startswith(DELIBERATE)
                                                                   or _INPUT_ERROR.match(outcome.reason)):
                problems.append(f"{path.name} ({pack}): {outcome.stage}: {outcome.reason}\n"
                                f"{outcome.summary.get('traceback', '')[-600:]}")
            continue
        outcomes["results"] += 1
        table.append((path.name, what, pack, f"{len(outcome.results)} objects"))
        carried = _source_errors(path)
        source = pydicom.dcmread(path, stop_before_pixels=True)
        for _, _, result, _ in outcome.results:
            new = [line for line in dciodvfy_errors(result) if not _carried_over(line, carried, source)]
            if new:
                problems.append(f"{path.name} ({pack}) → {Path(result).name}: {new[:3]}")
    print("\n".join(" | ".join(row) for row in table))
    print(dict(outcomes))
    assert not problems, "\n".join(problems)
    assert outcomes["results"] >= 10, outcomes
