"""The model packs the node knows, by the name routes use."""
from __future__ import annotations

import importlib
from pathlib import Path

from .protocol import ModelPack

__all__ = ["PACKS", "load_pack"]

PACKS: dict[str, str] = {
    "head-ct-hematoma": "models.head_ct_hematoma.pack:HeadCTHematomaPack",
    "chest-ct-landmarks": "models.chest_ct_landmarks.pack:ChestCTLandmarksPack",
    "cxr-nodule": "models.cxr_nodule.pack:CXRNodulePack",
    "cxr-pneumonia": "models.cxr_pneumonia.pack:CXRPneumoniaPack",
    "brain-mr": "models.brain_mr.pack:BrainMRPack",
}
"""Pack name → ``module:class``. The class takes ``weights: Path | None``."""


def load_pack(pack: str, weights: Path | None = None) -> ModelPack:
    """Instantiate the pack called ``pack``, optionally with other weights than its demo ones."""
    try:
        target = PACKS[pack]
    except KeyError:
        raise KeyError(f"unknown model pack {pack!r} (known: {', '.join(sorted(PACKS))})") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(weights=weights)
