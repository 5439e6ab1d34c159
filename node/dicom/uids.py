"""DICOM UID syntax (PS3.5 §9.1), in one place for everything that names files or rows by UID."""
from __future__ import annotations

import re

__all__ = ["UID_MAX_LENGTH", "is_valid_uid"]

UID_MAX_LENGTH = 64
"""A UID is at most 64 characters (PS3.5 §9.1)."""

_COMPONENT = r"(?:0|[1-9][0-9]*)"
_UID = re.compile(rf"{_COMPONENT}(?:\.{_COMPONENT})*")


def is_valid_uid(value: object) -> bool:
    """Whether ``value`` is a UID as PS3.5 §9.1 spells it.

    1 to 64 characters; components of digits separated by single dots; no empty
    component; no leading zero in a component of more than one digit. Nothing else,
    not even a trailing newline or the padding of an encoded value.
    """
    return (
        isinstance(value, str)
        and 0 < len(value) <= UID_MAX_LENGTH
        and _UID.fullmatch(value) is not None
    )
