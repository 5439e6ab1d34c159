"""A C-STORE SCU: sends DICOM files to a node or a PACS (``ainode send``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pydicom
from pynetdicom import AE
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

__all__ = ["SendReport", "dicom_files", "send_paths"]


@dataclass(frozen=True)
class SendReport:
    sent: int
    failed: list[tuple[str, str]]  # (path, reason)


def dicom_files(paths: Iterable[Path]) -> list[Path]:
    """Every DICOM file (with the ``DICM`` preamble) under ``paths``, sorted."""
    found: list[Path] = []
    for root in paths:
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in candidates:
            with open(path, "rb") as fh:
                head = fh.read(132)
            if len(head) == 132 and head[128:132] == b"DICM":
                found.append(path)
    return found


def send_paths(
    files: Sequence[Path], host: str, port: int, called_ae: str, calling_ae: str = "AINODE-SCU"
) -> SendReport:
    """Send ``files`` over one association, one presentation context per SOP class."""
    classes: dict[Path, tuple[str, str]] = {}
    for path in files:
        meta = pydicom.filereader.read_file_meta_info(path)
        classes[path] = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
    ae = AE(ae_title=calling_ae)
    ae.maximum_pdu_size = 0
    for sop_class, syntax in sorted(set(classes.values())):
        syntaxes = list(dict.fromkeys([syntax, ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
        ae.add_requested_context(sop_class, syntaxes)
    if len(ae.requested_contexts) > 128:
        raise ValueError("more than 128 SOP class / transfer syntax pairs: send in parts")
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        return SendReport(0, [(str(p), "association not established") for p in files])
    sent, failed = 0, []
    try:
        for path in files:
            status = assoc.send_c_store(path)
            code = getattr(status, "Status", None)
            if code is not None and code in (0x0000, 0xB000, 0xB006, 0xB007):
                sent += 1
            else:
                failed.append((str(path), "no response" if code is None else f"status 0x{int(code):04X}"))
    finally:
        assoc.release()
    return SendReport(sent, failed)
