"""The classes of the brain MR model: label values, names and DICOM codes."""
from __future__ import annotations

import highdicom as hd

__all__ = [
    "ANATOMICAL_STRUCTURE",
    "CLASS_CODES",
    "CLASS_NAMES",
    "MORPHOLOGICALLY_ABNORMAL_STRUCTURE",
    "STRUCTURES",
    "TUMOR",
    "UNLABELLED",
]

CLASS_NAMES: tuple[str, ...] = (
    "background", "cerebrum", "cerebellum", "brainstem", "ventricles", "vessels", "tumor",
)
"""Label values 0..6, in the order of the network's output channels.

Background is everything that is not one of the structures: air, scalp, skull and the
subarachnoid CSF. Peritumoral oedema belongs to the structure it lies in (cerebrum);
"tumor" is the lesion itself (enhancing rim and necrotic core).
"""

STRUCTURES: tuple[int, ...] = (1, 2, 3, 4, 5)
"""Label values of the normal structures."""

TUMOR = CLASS_NAMES.index("tumor")

UNLABELLED = 255
"""Label value of voxels nobody annotated (masked out of the loss)."""

ANATOMICAL_STRUCTURE = hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure")
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = hd.sr.CodedConcept(
    "49755003", "SCT", "Morphologically Abnormal Structure"
)

CLASS_CODES: dict[int, tuple[hd.sr.CodedConcept, hd.sr.CodedConcept, str]] = {
    1: (ANATOMICAL_STRUCTURE, hd.sr.CodedConcept("83678007", "SCT", "Cerebrum"), "Cerebrum"),
    2: (ANATOMICAL_STRUCTURE, hd.sr.CodedConcept("113305005", "SCT", "Cerebellum"), "Cerebellum"),
    3: (ANATOMICAL_STRUCTURE, hd.sr.CodedConcept("119238007", "SCT", "Brain stem"), "Brainstem"),
    4: (ANATOMICAL_STRUCTURE, hd.sr.CodedConcept("35764002", "SCT", "Brain ventricle"), "Ventricles"),
    5: (ANATOMICAL_STRUCTURE, hd.sr.CodedConcept("59820001", "SCT", "Blood vessel"), "Vessels"),
    6: (MORPHOLOGICALLY_ABNORMAL_STRUCTURE, hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"), "Tumor"),
}
"""Label value → (Segmented Property Category, Segmented Property Type, Segment Label)."""
