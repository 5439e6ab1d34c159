"""The generic pack: one :class:`~node.packs.protocol.ModelPack` for every configured model with a ``format``.

``preprocess`` gives the model what it reads (the series as a volume with its geometry,
or, for a command, a folder with the series' files), the pack's own engine
(:meth:`GenericPack.create_engine`) runs the model (the ``inference`` stage, so that a
command that fails or hangs fails the job there), ``postprocess`` maps its output back
onto the series' voxels and ``write_results`` builds the SEG and the report.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from pydicom import Dataset

from ...dicom.attributes import VOLUME
from ...results.algorithm import AlgorithmInfo
from ..protocol import Engine
from .command import run_command, write_input
from .report import GenericFindings, read_objects, write_results
from .spec import ModelSpec, decode_spec
from .volume import Volume, labels_on_series, series_affine, series_volume

__all__ = ["CommandRunner", "GenericPack", "load_runner"]


class CommandRunner:
    """The engine of a ``command`` model: runs the program on the folder :meth:`GenericPack.preprocess` wrote."""

    name = "command"

    def __init__(self, spec: ModelSpec) -> None:
        if not spec.command:
            raise ValueError(f"model {spec.name!r}: format \"command\" needs command = [\"program\", ...]")
        program = spec.command[0]
        if shutil.which(program) is None and not Path(spec.path or ".", program).is_file():
            raise FileNotFoundError(f"model {spec.name!r}: program {program!r} not found")
        self.spec = spec
        self.names: dict[int, str] = {}
        self.version = spec.version or "unversioned"
        self.identity = json.dumps([spec.command, spec.path]).encode("utf-8")

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the program on each folder of ``inputs["folder"]``; one output per folder."""
        (folder,) = [str(v) for v in inputs["folder"]]
        output = run_command(self.spec, Path(folder))
        if output.labels is None:
            return {"dicom": np.array([json.dumps([str(p) for p in output.dicom_files])])}
        return {"labels": output.labels[None], "affine": output.affine[None],  # type: ignore[index]
                "names": np.array([json.dumps(output.names)])}


def load_runner(spec: ModelSpec) -> Any:
    """The engine that runs ``spec`` (loading its model: a network that does not load fails here)."""
    if spec.format == "command":
        return CommandRunner(spec)
    if spec.format == "monai-bundle":
        from .monai_bundle import BundleRunner

        return BundleRunner(spec)
    from .nnunet import NnunetRunner

    return NnunetRunner(spec)


class GenericPack:
    """A model the project did not write, run as its ``[models.NAME]`` table says.

    Parameters
    ----------
    weights:
        The model's :class:`~.spec.ModelSpec`, as :func:`~.spec.encode_spec` wrote it.
    """

    name: ClassVar[str] = "generic"
    batch_size: ClassVar[int] = 1
    series_number_base: ClassVar[int] = 9100
    slice_wise: ClassVar[bool] = False
    tolerates_excluded_slices: ClassVar[bool] = False
    required_attributes = VOLUME
    stream_results = None
    applicability = None
    """Not calibrated: a model the project did not write has no applicability block."""

    def __init__(self, weights: Path | None = None) -> None:
        if weights is None:
            raise ValueError("the generic pack runs models configured with [models.NAME] format = ...")
        self.spec = decode_spec(weights)
        self.runner = load_runner(self.spec)
        digest = hashlib.sha256(self.runner.identity).digest()
        self.algorithm = AlgorithmInfo(name=self.spec.name, version=self.runner.version,
                                       device_uid=f"2.25.{uuid.UUID(bytes=digest[:16]).int}")
        self._work = Path(tempfile.gettempdir()) / f"ainode-byom-{os.getpid()}-{self.spec.name}"

    def model_path(self) -> Path:
        """The model's folder (a command's working folder)."""
        return Path(self.spec.path or ".")

    def create_engine(self, engine: str) -> Engine:
        """The engine that runs this model (its runner; ``engine`` was given to it by the configuration)."""
        return self.runner  # type: ignore[no-any-return]

    def preprocess(self, series: Sequence[Dataset]) -> dict[str, np.ndarray]:
        """A command's input folder, or the series as a ``(1, slice, row, column)`` volume and its affine."""
        if self.spec.format == "command":
            shutil.rmtree(self._work, ignore_errors=True)  # what an earlier job left
            in_dir = write_input(series, self._work, self.spec)
            return {"folder": np.array([str(in_dir)])}
        volume = series_volume(series)
        return {"image": volume.data[None], "affine": volume.affine[None]}

    def postprocess(self, series: Sequence[Dataset], outputs: Mapping[str, np.ndarray]) -> GenericFindings:
        """The model's output on the series' voxels, with its label names (or its DICOM objects)."""
        affine = series_affine(series)
        voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
        try:
            if "dicom" in outputs:
                objects = read_objects([Path(p) for p in json.loads(str(outputs["dicom"][0]))])
                return GenericFindings(None, {}, voxel_ml, objects=objects)
            labels = np.asarray(outputs["labels"][0])
            if "affine" in outputs:  # a label image in its own space (RAS): onto the series' voxels
                shape = (len(series), int(series[0].Rows), int(series[0].Columns))
                labels = labels_on_series(labels, outputs["affine"][0], Volume(np.zeros(shape, np.float32), affine))
            names = ({int(k): v for k, v in json.loads(str(outputs["names"][0])).items()}
                     if "names" in outputs else dict(self.runner.names))
            return GenericFindings(labels.astype(np.int32), names, voxel_ml)
        finally:
            shutil.rmtree(self._work, ignore_errors=True)

    write_results = staticmethod(write_results)
    """The SEG and report of the findings, or the command's checked objects: :func:`.report.write_results`."""
