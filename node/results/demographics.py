"""Patient and study attributes a result object can copy: valid ones as they are, the rest repaired or left out.

Result objects copy the source's Patient, General Study and Patient Study attributes
(:data:`node.results.equipment.PATIENT_STUDY_KEYWORDS`). Real sources carry invalid
values (a birth date ``1950-01-01``, a sex ``Male``, an age ``45``) that highdicom refuses
when it builds the object, and a result must never be lost over a demographic field.
:func:`repair_demographics` checks each of those attributes of a source dataset: a value
that can be repaired without guessing is rewritten (``1950-01-01`` → ``19500101``,
``male`` → ``M``), a Type 2 attribute that cannot is emptied, any other is removed. It
logs the attribute's keyword and what was done, never the value.
"""
from __future__ import annotations

import logging
import re
import warnings
from typing import Any

from pydicom import Dataset, config
from pydicom.valuerep import DA, DT, TM, validate_value

from ..logs import log
from .equipment import PATIENT_STUDY_KEYWORDS

__all__ = ["repair_demographics"]

_logger = logging.getLogger("ainode.results")

_TYPE_2 = frozenset({
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber",
})
"""Attributes of the Patient and General Study modules that must be present, even empty."""

_PARSERS: dict[str, Any] = {"DA": DA, "TM": TM, "DT": DT}
_SEXES = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F", "O": "O", "OTHER": "O"}


def repair_demographics(ds: Dataset, series_uid: str = "") -> list[str]:
    """Make the patient/study attributes of ``ds`` valid in place; return ``"Keyword: action"`` lines.

    Parameters
    ----------
    ds:
        A source dataset, read from disk (modified in place).
    series_uid:
        Series Instance UID for the log record.
    """
    actions = []
    for keyword in PATIENT_STUDY_KEYWORDS:
        if keyword not in ds:
            continue
        try:
            element = ds[keyword]
            if element.VR == "SQ" or element.value in (None, "", b""):
                continue
            problem = _problem(element.VR, element.value)
        except Exception:  # a raw element pydicom cannot even convert
            problem, element = True, None
        if not problem:
            continue
        repaired = _repair(keyword, element.value) if element is not None else None
        if repaired is not None:
            ds[keyword].value = repaired
            action = "repaired"
        elif keyword in _TYPE_2:
            ds[keyword].value = ""
            action = "emptied"
        else:
            del ds[keyword]
            action = "removed"
        actions.append(f"{keyword}: {action}")
        log(_logger, logging.WARNING, "invalid source attribute not copied as it was", keyword=keyword,
            action=action, series_uid=series_uid)
    return actions


def _problem(vr: str, value: Any) -> bool:
    """Whether ``value`` is not a valid value of ``vr``."""
    values = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for item in values:
            text = str(item)
            try:
                validate_value(vr, text if vr not in ("PN",) else item, config.RAISE)
                if vr in _PARSERS and text.strip():
                    _PARSERS[vr](text.strip())
            except Exception:
                return True
    return False


def _repair(keyword: str, value: Any) -> str | None:
    """A valid form of ``value`` when one follows from it without guessing, else ``None``."""
    text = str(value).strip()
    if keyword.endswith("Date"):
        digits = re.sub(r"[-./ ]", "", text)
        if re.fullmatch(r"\d{8}", digits) and not _problem("DA", digits):
            return digits
    elif keyword.endswith("Time"):
        digits = text.replace(":", "")
        if re.fullmatch(r"\d{2,6}(\.\d{1,6})?", digits) and not _problem("TM", digits):
            return digits
    elif keyword == "PatientSex":
        return _SEXES.get(text.upper())
    return None
