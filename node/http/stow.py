"""STOW-RS (PS3.18 10.5): the request body's parts and the response the sender reads.

The HTTP route (:mod:`node.http.web`) hands each ``application/dicom`` part to the same
acceptor as C-STORE, so a STOW-RS instance is answered only once it is durable and in
the job store, with the same duplicate policy, disk watermark and accepted transfer
syntaxes (every one the node can decode, :mod:`node.ingest.syntaxes`; a part in another
is failed with ``0xC000`` and counted as ``unsupported_syntax``). One request is one
transfer: its end releases its series as an A-RELEASE does (``complete_on_release``).
"""
from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass
from typing import Any, Iterator

__all__ = ["StoredInstance", "StowRequestError", "dicom_parts", "stow_response"]

_DICOM = "application/dicom"

# Failure Reasons of PS3.18 / PS3.7 used in the Failed SOP Sequence.
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
SOP_CLASS_MISMATCH = 0xA900
REFERENCED_STUDY_MISMATCH = 0xC122  # the instance is not of the study named in the URL


class StowRequestError(ValueError):
    """The request itself is not a STOW-RS request (answered 415 or 400)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class StoredInstance:
    """The outcome for one part: its UIDs as far as known, and a failure reason or None."""

    sop_class_uid: str
    sop_instance_uid: str
    failure_reason: int | None = None


def dicom_parts(content_type: str, body: bytes) -> Iterator[bytes]:
    """The ``application/dicom`` parts of a ``multipart/related`` body, in order.

    Raises :class:`StowRequestError` (415) when the request is not multipart/related with
    ``type="application/dicom"``, and (400) when the body has no parts.
    """
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if message.get_content_type() != "multipart/related":
        raise StowRequestError(415, "expected multipart/related; type=\"application/dicom\"")
    declared = message.get_param("type")
    if declared is not None and str(declared).lower() != _DICOM:
        raise StowRequestError(415, f"only type=\"{_DICOM}\" parts are accepted, not {declared!r}")
    parts = [part for part in message.iter_parts()]
    if not parts:
        raise StowRequestError(400, "the multipart body holds no part")
    for part in parts:
        if part.get_content_type() != _DICOM:
            raise StowRequestError(415, f"a part of type {part.get_content_type()!r} is not {_DICOM}")
        payload = part.get_payload(decode=True)
        yield payload if isinstance(payload, bytes) else b""


def stow_response(outcomes: list[StoredInstance], retrieve_base: str | None = None) -> tuple[int, dict[str, Any]]:
    """The HTTP status and the DICOM JSON body of a STOW-RS response.

    200 when every instance was stored, 202 when some failed, 409 when none was stored.
    """
    referenced = [o for o in outcomes if o.failure_reason is None]
    failed = [o for o in outcomes if o.failure_reason is not None]
    body: dict[str, Any] = {}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": [_item(o) for o in referenced]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": [_item(o) for o in failed]}
    if retrieve_base:
        body["00081190"] = {"vr": "UR", "Value": [retrieve_base]}
    status = 200 if not failed else 202 if referenced else 409
    return status, body


def _item(outcome: StoredInstance) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": [outcome.sop_class_uid]} if outcome.sop_class_uid else {"vr": "UI"},
        "00081155": {"vr": "UI", "Value": [outcome.sop_instance_uid]} if outcome.sop_instance_uid else {"vr": "UI"},
    }
    if outcome.failure_reason is not None:
        item["00081197"] = {"vr": "US", "Value": [outcome.failure_reason]}
    return item
