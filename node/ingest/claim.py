"""What a sender claims for a dataset it sends: the UIDs, and the file it may hand over.

A C-STORE claims the Affected SOP Class and Instance UIDs, a Part-10 file its meta's;
the header read afterwards must agree (:func:`check_claim`).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from pydicom.dataset import FileMetaDataset

from .header import Encoded, InstanceHeader, InstanceRefused, Status

__all__ = ["Claim", "Movable", "check_claim", "claimed_uids"]


class Movable(NamedTuple):
    """A received Part-10 file the acceptor may move into the spool, and what its meta names."""

    path: Path
    sop_class_uid: str | None
    sop_instance_uid: str | None
    transfer_syntax: str

    def holds(self, header: InstanceHeader, dataset: Encoded) -> bool:
        """Whether the file, as it is, is the instance the header describes: its meta names
        the same SOP Class and Instance UIDs and the dataset's transfer syntax."""
        return (self.sop_class_uid, self.sop_instance_uid, self.transfer_syntax) == (
            header.sop_class_uid, header.sop_instance_uid, dataset.transfer_syntax)


class Claim(NamedTuple):
    """An encoded dataset and the UIDs its sender claims for it (``None``: none claimed)."""

    dataset: Encoded
    sop_class_uid: str | None
    sop_instance_uid: str | None
    movable: Movable | None = None
    """The file holding the dataset, when the acceptor may move it into the spool."""


def check_claim(claim: Claim, header: InstanceHeader) -> None:
    """Refuse a header whose SOP Class or Instance UID is not the one claimed (as dcmtk's storescp does)."""
    if (claim.sop_instance_uid is not None and header.sop_instance_uid != claim.sop_instance_uid
            or claim.sop_class_uid is not None and header.sop_class_uid != claim.sop_class_uid):
        raise InstanceRefused("uid_mismatch", Status.DATASET_DOES_NOT_MATCH_SOP_CLASS)


def claimed_uids(meta: FileMetaDataset) -> tuple[str | None, str | None]:
    """The SOP Class and Instance UIDs a file meta claims (``None`` where it has none)."""
    class_uid = meta.get("MediaStorageSOPClassUID")
    instance_uid = meta.get("MediaStorageSOPInstanceUID")
    return (None if class_uid is None else str(class_uid), None if instance_uid is None else str(instance_uid))
