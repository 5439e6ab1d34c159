"""The model packs the node knows, by the name routes use, and the command modules of ``models/``.

The one place in ``node/`` that names a module of ``models/``."""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol import ModelPack

from .generic.spec import GENERIC_PACK

__all__ = ["GENERIC_PACK", "APPLICABILITY_COMMANDS", "MODEL_COMMANDS", "PACKS", "PHANTOM_COMMANDS", "installed_commands", "load_pack"]

PACKS: dict[str, str] = {
    "head-ct-hematoma": "models.head_ct_hematoma.pack:HeadCTHematomaPack",
    "chest-ct-landmarks": "models.chest_ct_landmarks.pack:ChestCTLandmarksPack",
    "cxr-nodule": "models.cxr_nodule.pack:CXRNodulePack",
    "cxr-pneumonia": "models.cxr_pneumonia.pack:CXRPneumoniaPack",
    "brain-mr": "models.brain_mr.pack:BrainMRPack",
}
"""Pack name → ``module:class``. The class takes ``weights: Path | None``."""

PHANTOM_COMMANDS: dict[str, str] = {
    "head-ct": "models.phantoms.head_ct",
    "chest-ct": "models.phantoms.chest_ct",
    "cxr": "models.phantoms.cxr",
    "brain-mr": "models.phantoms.brain_mr",
}
"""``ainode phantom KIND`` → module with ``add_cli_arguments(parser)`` and ``run_cli(args) -> int``."""

MODEL_COMMANDS: dict[str, str] = {
    "head-ct-hematoma": "models.head_ct_hematoma.commands",
    "chest-ct-landmarks": "models.chest_ct_landmarks.commands",
    "cxr-nodule": "models.cxr_nodule.commands",
    "cxr-pneumonia": "models.cxr_pneumonia.commands",
    "brain-mr": "models.brain_mr.commands",
}
"""``ainode models train|eval PACK`` → module with ``add_train_arguments``, ``run_train``,
``add_eval_arguments`` and ``run_eval``. Modules import heavy libraries (torch) inside
the ``run_*`` functions only."""

APPLICABILITY_COMMANDS = "models.training.applicability"
"""``ainode models calibrate NAME`` and ``ainode models eval NAME --applicability N``: a module with
``add_calibrate_arguments``, ``run_calibrate`` and ``run_eval(args, name)``."""


def load_pack(pack: str, weights: Path | None = None) -> ModelPack:
    """Instantiate the pack called ``pack``, optionally with other weights than its demo ones.

    :data:`GENERIC_PACK` runs a model configured by ``[models.NAME] format = ...`` (its
    description travels in ``weights``, see :mod:`node.packs.generic.spec`).
    """
    if pack == GENERIC_PACK:
        from .generic.pack import GenericPack

        return GenericPack(weights)
    try:
        target = PACKS[pack]
    except KeyError:
        raise KeyError(f"unknown model pack {pack!r} (known: {', '.join(sorted(PACKS))})") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(weights=weights)


def installed_commands(table: dict[str, str]) -> list[tuple[str, ModuleType]]:
    """The command modules of ``table`` (:data:`PHANTOM_COMMANDS`, :data:`MODEL_COMMANDS`) in this installation.

    A module that is absent is left out; one that exists but fails to import raises.
    """
    found = []
    for name, module_name in table.items():
        try:
            found.append((name, importlib.import_module(module_name)))
        except ModuleNotFoundError as exc:
            if exc.name is None or not module_name.startswith(exc.name):
                raise
    return found
