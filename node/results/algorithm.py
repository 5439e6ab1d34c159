"""The identity of a model as every result object names it."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AlgorithmInfo"]


@dataclass(frozen=True)
class AlgorithmInfo:
    """Identity of a model as written into every result object.

    Parameters
    ----------
    name:
        Human-readable algorithm name (Algorithm Name, Manufacturer Model Name).
    version:
        Algorithm version (Algorithm Version, Software Versions).
    device_uid:
        A UID that identifies these exact weights; it changes when the model is retrained.
    manufacturer:
        Who made the algorithm.
    """

    name: str
    version: str
    device_uid: str
    manufacturer: str = "ainode"
