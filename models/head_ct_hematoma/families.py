"""The phantom families the head CT hematoma classifier is trained and tested on.

* ``a``: :mod:`models.phantoms.head_ct`, plain;
* ``a-styled``: the same generator with its randomised scanner and patient styles;
* ``b``: :mod:`models.phantoms.head_ct_b`, written independently from the research's
  description (its own anatomy, scanner, and five hematoma types at three ages).

A family-B phantom of seed ``s`` shares nothing with family A's phantom of ``s`` (its own
random stream), so the seed ranges of :mod:`.evaluation` serve both families; an even seed
has hematomas in both.
"""
from __future__ import annotations

from typing import Any

__all__ = ["FAMILIES", "generate", "hematoma_type"]

FAMILIES = ("a", "a-styled", "b")


def generate(family: str, seed: int, slices: int = 24) -> Any:
    """The phantom of ``seed`` in ``family`` (``datasets``, ``hu``, ``patch_labels``, ``has_hematoma``)."""
    hematoma = int(seed) % 2 == 0
    if family == "b":
        from models.phantoms.head_ct_b import generate_head_ct_b

        return generate_head_ct_b(int(seed), slices=slices, hematoma=hematoma)
    if family not in ("a", "a-styled"):
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    from models.phantoms.head_ct import generate_head_ct

    return generate_head_ct(int(seed), slices=slices, hematoma=hematoma, styles=family == "a-styled")


def hematoma_type(phantom: Any) -> str:
    """The first hematoma's type (``none`` without one; family A draws intraparenchymal blobs only)."""
    if not phantom.has_hematoma:
        return "none"
    types = getattr(phantom, "hematoma_types", None)
    return types[0] if types else "intraparenchymal"
