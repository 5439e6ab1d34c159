"""Scrub attribute values out of free text (failure reasons, tracebacks) before anyone reads it.

Exceptions raised while reading or writing DICOM quote the values they choke on (a
birth date that does not parse, a patient name in a dataset's repr). Reasons are shown
by the HTTP API and written to logs, so they keep what explains the failure (the
attribute's keyword or name and tag, VR, UIDs, numbers of slices) and lose the values: quoted text that is
not a UID, keyword, VR or lower-case words; ``Keyword=value`` of identifying attributes; person names
(``DOE^JOHN``); and dates.
"""
from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["REDACTED", "scrub"]

REDACTED = "<redacted>"

_IDENTIFYING = (r"Patient\w*|Accession\w*|Other\w*Patient\w*|Issuer\w*|\w*PhysiciansName|\w*PhysicianName|"
                r"\w*PhysiciansOfRecord|OperatorsName|InstitutionName|InstitutionAddress|StudyID|"
                r"PerformingPhysicianName|RequestingPhysician|EthnicGroup|Occupation|MilitaryRank|"
                r"(?:Patient|Person)'s [\w ]+|Referring Physician's Name|Accession Number|Institution Name")
_ASSIGNED = re.compile(rf"(?P<key>\b(?:{_IDENTIFYING}))(?P<sep>\s*(?:\b[A-Z]{{2}}\b)?\s*[:=]\s*)(?P<value>[^,;)\]\n]+)")
_QUOTED = re.compile(r"(?P<q>['\"])(?P<value>(?:(?!(?P=q)).){0,400})(?P=q)")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")
_KEYWORD = re.compile(r"^(?:[A-Z][a-z0-9]+){2,}$|^[A-Z]{2}$|^[a-z_]+$")
_PROSE = re.compile(r"^[A-Za-z][a-z]*(?: [a-z]+)+$")  # "Connection refused": an error's words, not a value
_PERSON_NAME = re.compile(r"[\w'.-]*\^[\w'.^ -]*")
_DATE = re.compile(r"(?<![\d.])(?:19|20)\d{2}-?(?:0[1-9]|1[0-2])-?(?:0[1-9]|[12]\d|3[01])(?![\d.])")


def scrub(text: str | None) -> str | None:
    """``text`` without attribute values; ``None`` stays ``None``."""
    if not text:
        return text
    text = _ASSIGNED.sub(lambda m: f"{m['key']}{m['sep']}{REDACTED}", text)
    text = _QUOTED.sub(_quoted, text)
    text = _PERSON_NAME.sub(REDACTED, text)
    return _DATE.sub(REDACTED, text)


@lru_cache(maxsize=1)
def _attribute_names() -> frozenset[str]:
    """Every keyword and name of the DICOM data dictionary (``Rows``, ``Pixel Spacing``)."""
    from pydicom.datadict import DicomDictionary

    return frozenset(n for entry in DicomDictionary.values() for n in (entry[2], entry[4]) if n)


def _attribute(value: str) -> bool:
    """``value`` names a DICOM attribute: a name of the dictionary, not a value (kept)."""
    return value in _attribute_names()


def _quoted(match: re.Match[str]) -> str:
    value = match["value"]
    if value == REDACTED or _UID.match(value) or _KEYWORD.match(value) or _PROSE.match(value) or _attribute(value):
        return match.group(0)
    return f"{match['q']}{REDACTED}{match['q']}"
