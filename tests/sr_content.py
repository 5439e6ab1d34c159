"""Read a TID 1500 SR's content tree in tests, by concept meaning."""
from __future__ import annotations

from typing import Iterator

from pydicom import Dataset

__all__ = ["content_items", "coded_values", "numeric_values", "referenced_sop_uids"]


def content_items(ds: Dataset) -> Iterator[Dataset]:
    """Every content item of the tree, depth first."""
    for item in ds.get("ContentSequence", []):
        yield item
        yield from content_items(item)


def _name(item: Dataset) -> str:
    seq = item.get("ConceptNameCodeSequence")
    return str(seq[0].CodeMeaning) if seq else ""


def coded_values(ds: Dataset) -> dict[str, list[str]]:
    """Concept name → meanings of its CODE values."""
    values: dict[str, list[str]] = {}
    for item in content_items(ds):
        if item.ValueType == "CODE":
            values.setdefault(_name(item), []).append(str(item.ConceptCodeSequence[0].CodeMeaning))
    return values


def numeric_values(ds: Dataset) -> dict[str, list[float]]:
    """Concept name → its NUM values."""
    values: dict[str, list[float]] = {}
    for item in content_items(ds):
        if item.ValueType == "NUM":
            values.setdefault(_name(item), []).append(float(item.MeasuredValueSequence[0].NumericValue))
    return values


def referenced_sop_uids(ds: Dataset) -> set[str]:
    """SOP Instance UIDs that IMAGE items of the tree reference."""
    return {
        str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        for item in content_items(ds)
        if item.ValueType == "IMAGE"
    }
