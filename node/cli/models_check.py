"""``ainode models check NAME``: load a configured model, run it on a phantom or a folder of
DICOM, and print what the node would send (nothing is sent)."""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["add_check_command", "run_check"]


def add_check_command(actions: argparse._SubParsersAction) -> None:
    """Add ``models check NAME`` to the ``models`` actions."""
    check = actions.add_parser(
        "check", help="run a configured model on a phantom or a DICOM folder and print what it would send",
        description="Load the model [models.NAME] (or the pack NAME) as the node would, run it on one series "
                    "and print the result objects it would send; nothing is sent.")
    check.add_argument("name", metavar="NAME", help="the model: a [models.NAME] of the configuration, or a pack")
    check.add_argument("--config", type=Path, help="config.toml (default: the embedded defaults)")
    source = check.add_mutually_exclusive_group(required=True)
    source.add_argument("--phantom", metavar="KIND", help="run on a phantom of this kind (ainode phantom KIND) (default: --dicom is required instead)")
    source.add_argument("--dicom", type=Path, metavar="DIR", help="run on the largest series in this folder (default: --phantom is required instead)")
    check.add_argument("--out", type=Path, help="also write the result objects here (default: not written)")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Run the check; 0 when the model produced its objects, 1 (with the stage and reason) when not."""
    from ..config import load_config

    config = load_config(args.config)
    model = config.model(args.name)
    with tempfile.TemporaryDirectory(prefix="ainode-check-") as tmp:
        folder = args.dicom if args.dicom is not None else _phantom(args.phantom, Path(tmp))
        paths = _largest_series(folder)
        stages: list[str] = []
        try:
            objects, engine, seconds = _run(model, paths, stages)
        except Exception as exc:
            print(f"{args.name}: failed at {stages[-1] if stages else 'load'}: {type(exc).__name__}: {exc}")
            return 1
    print(f"{args.name}: {len(paths)} images from {folder}, engine {engine}, {seconds:.1f} s")
    for ds in objects:
        print("  " + _describe(ds))
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            ds.save_as(args.out / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
    if args.out is not None:
        print(f"wrote {len(objects)} objects to {args.out}")
    return 0


def _run(model: Any, paths: list[str], stages: list[str]) -> tuple[list[Any], str, float]:
    """The model's result objects for the series ``paths``, its engine's name and the seconds it
    took; ``stages`` gets the name of each stage as it starts (the last one is where it failed)."""
    from ..engines import EngineOptions, create_engine
    from ..packs.protocol import ResultContext
    from ..packs.registry import load_pack
    from ..worker.engines import network_module, run_batched
    from ..worker.series import load_series

    started = time.perf_counter()
    stages.append("load")
    pack = load_pack(model.pack, model.weights)
    series, _ = load_series(paths, pack)
    stages.append("engine")
    own = getattr(pack, "create_engine", None)
    engine = own(model.engine) if callable(own) else create_engine(
        model.engine, pack.model_path(), EngineOptions(network_module=network_module(pack)))
    stages.append("preprocess")
    inputs = pack.preprocess(series)
    stages.append("inference")
    outputs = run_batched(engine, inputs, model.batch_size or pack.batch_size)
    stages.append("postprocess")
    findings = pack.postprocess(series, outputs)
    stages.append("write")
    objects = pack.write_results(series, findings, ResultContext(algorithm=pack.algorithm,
                                                                 series_number_base=pack.series_number_base))
    return objects, engine.name, time.perf_counter() - started


def _phantom(kind: str, folder: Path) -> Path:
    """A phantom of ``kind`` written to ``folder`` by its ``ainode phantom`` command."""
    from ..packs.registry import PHANTOM_COMMANDS, installed_commands

    modules = dict(installed_commands(PHANTOM_COMMANDS))
    if kind not in modules:
        raise SystemExit(f"unknown phantom {kind!r} (known: {', '.join(sorted(modules))})")
    parser = argparse.ArgumentParser()
    modules[kind].add_cli_arguments(parser)
    modules[kind].run_cli(parser.parse_args(["--out", str(folder)]))
    return folder


def _largest_series(folder: Path) -> list[str]:
    """The files of the series with the most images under ``folder``."""
    import pydicom

    by_series: dict[str, list[str]] = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        except Exception:  # not DICOM: the phantom's truth files, a README
            continue
        if "SeriesInstanceUID" in ds:
            by_series.setdefault(str(ds.SeriesInstanceUID), []).append(str(path))
    if not by_series:
        raise SystemExit(f"no DICOM series in {folder}")
    return max(by_series.values(), key=len)


def _describe(ds: Any) -> str:
    """One line for a result object: its kind, series, and its segments or title."""
    kind = {"SEG": "SEG", "SR": "SR", "KO": "KOS", "OT": "SC", "DOC": "STL"}.get(str(ds.get("Modality", "")), "")
    line = f"{kind or ds.SOPClassUID} series {ds.get('SeriesNumber', '?')} '{ds.get('SeriesDescription', '')}'"
    if "SegmentSequence" in ds:
        segments = [f"{s.SegmentLabel} ({s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator} "
                    f"{s.SegmentedPropertyTypeCodeSequence[0].CodeValue})" for s in ds.SegmentSequence]
        line += f": {ds.NumberOfFrames} frames, segments " + ", ".join(segments)
    elif "ContentSequence" in ds:
        line += f": {len(ds.ContentSequence)} content items, title {ds.ConceptNameCodeSequence[0].CodeMeaning!r}"
    return line
