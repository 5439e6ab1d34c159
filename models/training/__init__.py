"""What every pack's training shares: the fit loop's pieces, ONNX export and sessions, the outputs, the log, the commands.

* :mod:`.loop`: seeding, optimiser, one-cycle schedule, one optimisation step, epoch batches;
* :mod:`.onnx_export`: the ONNX graph the node deploys;
* :mod:`.sessions`: onnxruntime CPU sessions for evaluation;
* :mod:`.output`: the output folder, ``model.pt``, ``model.json`` and the default model versions;
* :mod:`.log`: :class:`TrainLog`, what ``ainode models train`` writes and prints;
* :mod:`.commands`: the options and the end of ``ainode models train|eval PACK`` every pack shares.
"""
from __future__ import annotations

from models.training.log import LOG_NAME, REPORT_NAME, TrainLog, summary_lines
from models.training.loop import adamw, epoch_batches, one_cycle, optimise, parameter_count, quiet, seed_torch
from models.training.onnx_export import export_onnx
from models.training.output import dated_version, output_folder, save_weights, timestamp_version, write_json
from models.training.sessions import onnx_session

__all__ = [
    "LOG_NAME", "REPORT_NAME", "TrainLog", "adamw", "dated_version", "epoch_batches", "export_onnx", "one_cycle",
    "onnx_session", "optimise", "output_folder", "parameter_count", "quiet", "save_weights", "seed_torch",
    "summary_lines", "timestamp_version", "write_json",
]
