"""``format = "command"``: any program, run on the series in a folder, as mercure runs its modules.

The node writes the series' DICOM files into ``{input}`` (named ``<series UID>#<SOP UID>.dcm``)
with a ``task.json`` describing series, study and model (mercure's layout; its
``MERCURE_IN_DIR`` / ``MERCURE_OUT_DIR`` are set too), runs the program in its own process
group with a timeout and a memory limit, and takes from ``{output}`` either DICOM objects
(``*.dcm``) or a label image (``*.nii`` / ``*.nii.gz``) with ``labels.json``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom import Dataset

from .labels import read_labels_file
from .spec import ModelSpec

__all__ = ["CommandOutput", "run_command", "write_input"]

_LIMIT = ("import os, resource, sys\n"
          "limit = int(sys.argv[1])\n"
          "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
          "os.execvp(sys.argv[2], sys.argv[2:])\n")
"""Sets the memory limit, then becomes the program (no ``preexec_fn`` in a threaded worker)."""


@dataclass
class CommandOutput:
    """What a command left in ``{output}``: DICOM files, or a label image with its RAS affine and names."""

    dicom_files: list[Path]
    labels: np.ndarray | None = None
    affine: np.ndarray | None = None
    names: dict[int, str] | None = None


def write_input(series: Sequence[Dataset], folder: Path, spec: ModelSpec) -> Path:
    """Write the series and ``task.json`` into ``folder/input``; returns that folder."""
    in_dir = folder / "input"
    in_dir.mkdir(parents=True, exist_ok=True)
    first = series[0]
    for ds in series:
        target = in_dir / f"{ds.SeriesInstanceUID}#{ds.SOPInstanceUID}.dcm"
        source = getattr(ds, "filename", None)
        if isinstance(source, str) and Path(source).is_file():
            shutil.copyfile(source, target)
        else:
            ds.save_as(target, enforce_file_format=True)
    task = {
        "id": f"{spec.name}-{first.SeriesInstanceUID}",
        "info": {"action": "process", "uid": str(first.SeriesInstanceUID), "uid_type": "series",
                 "triggered_rules": {spec.name: True}, "applied_rule": spec.name},
        "process": {"module_name": spec.name, "module_config": {}, "settings": {}},
        "study": {"study_uid": str(first.StudyInstanceUID)},
        "series": {"series_uid": str(first.SeriesInstanceUID), "instances": len(series),
                   "modality": str(first.get("Modality", ""))},
        "dispatch": {},
    }
    (in_dir / "task.json").write_text(json.dumps(task, indent=2), encoding="utf-8")
    return in_dir


def run_command(spec: ModelSpec, in_dir: Path) -> CommandOutput:
    """Run the program on ``in_dir``; its output folder is ``in_dir``'s sibling ``output``.

    Raises
    ------
    TimeoutError
        When it runs past ``timeout_seconds`` (its whole process group is killed).
    RuntimeError
        When it exits with a status other than 0 (the last line it wrote to stderr given).
    """
    out_dir = in_dir.parent / "output"
    out_dir.mkdir(parents=True, exist_ok=True)
    values = {"input": str(in_dir), "output": str(out_dir), "model": spec.path}
    argv = [part.format(**values) for part in spec.command]
    if spec.memory_mb > 0:
        argv = [sys.executable, "-c", _LIMIT, str(spec.memory_mb * 1024 * 1024), *argv]
    env = dict(os.environ, MERCURE_IN_DIR=str(in_dir), MERCURE_OUT_DIR=str(out_dir))
    proc = subprocess.Popen(argv, cwd=spec.path or None, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=spec.timeout_seconds)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise TimeoutError(f"command {Path(spec.command[0]).name} did not finish in {spec.timeout_seconds:g} s "
                           "(its process group was killed)") from None
    if proc.returncode != 0:
        lines = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
        last = f": {lines[-1][:200]}" if lines else ""
        raise RuntimeError(f"command {Path(spec.command[0]).name} exited with status {proc.returncode}{last}")
    return read_output(out_dir)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def read_output(out_dir: Path) -> CommandOutput:
    """What a command left in ``out_dir`` (see :class:`CommandOutput`).

    Raises
    ------
    ValueError
        When there is neither a DICOM object nor a label image, or a label image without labels.
    """
    dicom = sorted(p for p in out_dir.rglob("*.dcm") if p.is_file())
    images = sorted(p for p in out_dir.rglob("*") if p.name.endswith((".nii", ".nii.gz")))
    if dicom:
        return CommandOutput(dicom)
    if not images:
        raise ValueError("the command wrote no result: no *.dcm and no *.nii / *.nii.gz in {output}")
    labels_file = next((p for p in sorted(out_dir.rglob("*.json")) if p.is_file()), None)
    if labels_file is None:
        raise ValueError(f"label image {images[0].name} has no labels file (labels.json) beside it")
    import nibabel

    image = nibabel.load(str(images[0]))
    data = np.asarray(image.dataobj)
    return CommandOutput([], np.rint(data).astype(np.int32), np.asarray(image.affine, float),
                         read_labels_file(labels_file))
