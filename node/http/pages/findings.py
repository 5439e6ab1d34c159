"""An SR's findings as table rows: what was measured or judged, in which group, with its unit.

Reads the content tree of a TID 1500 report (or any SR): every NUM, CODE and TEXT item
under a measurement group, labelled by the group's tracking identifier or finding. The
observer context, algorithm identification and UID references are left out: they say who
measured, not what was found.
"""
from __future__ import annotations

from dataclasses import dataclass

from pydicom import Dataset

__all__ = ["Finding", "sr_findings"]

_SKIP = {"Algorithm Name", "Algorithm Version", "Tracking Identifier", "Tracking Unique Identifier",
         "Language of Content Item and Descendants", "Procedure reported", "Observer Type"}
_CONTEXT_CONTAINERS = {"Image Library"}


@dataclass(frozen=True)
class Finding:
    """One row: the group (e.g. a structure or a lesion), what, its value and unit."""

    group: str
    name: str
    value: str
    unit: str = ""


def sr_findings(ds: Dataset) -> list[Finding]:
    """The findings of an SR document, in document order."""
    rows: list[Finding] = []
    _walk(ds.get("ContentSequence", []), "", rows)
    return rows


def _walk(items: list[Dataset], group: str, rows: list[Finding]) -> None:
    for item in items:
        name = _meaning(item, "ConceptNameCodeSequence")
        kind = item.get("ValueType", "")
        if kind == "CONTAINER":
            if name in _CONTEXT_CONTAINERS:
                continue
            children = item.get("ContentSequence", [])
            _walk(children, _group_label(children) or group or name, rows)
            continue
        if item.get("RelationshipType") == "HAS OBS CONTEXT" or name in _SKIP:
            continue
        if kind == "NUM" and item.get("MeasuredValueSequence"):
            measured = item.MeasuredValueSequence[0]
            unit = _meaning(measured, "MeasurementUnitsCodeSequence", "CodeValue")
            rows.append(Finding(group, name, f"{float(measured.NumericValue):g}", "" if unit.startswith("{") else unit))
        elif kind == "CODE":
            rows.append(Finding(group, name, _meaning(item, "ConceptCodeSequence")))
        elif kind == "TEXT":
            rows.append(Finding(group, name, str(item.get("TextValue", ""))))


def _group_label(children: list[Dataset]) -> str:
    for child in children:
        if _meaning(child, "ConceptNameCodeSequence") == "Tracking Identifier":
            return str(child.get("TextValue", ""))
    return ""


def _meaning(item: Dataset, sequence: str, attribute: str = "CodeMeaning") -> str:
    codes = item.get(sequence)
    return str(codes[0].get(attribute, "")) if codes else ""
