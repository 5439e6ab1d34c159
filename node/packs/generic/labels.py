"""Label names, as a model's metadata gives them, to coded SEG segments.

A name the table knows (liver, spleen, tumour ...) gets its SNOMED CT codes; any other name
gets a clear generic code: category SCT "Anatomical or abnormal structure" is not claimed,
the type is a private ``99AINODE`` code whose meaning is the model's own name for it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import highdicom as hd

from ...results.seg import Segment

__all__ = ["GENERIC_CATEGORY", "known_code", "label_names", "read_labels_file", "segment_for"]

_ANATOMY = hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure")
_ABNORMAL = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure")
GENERIC_CATEGORY = hd.sr.CodedConcept("AIN-BYOM-0000", "99AINODE", "Segmented region")
"""Category of a segment whose name the node does not know."""

_KNOWN: dict[str, tuple[hd.sr.CodedConcept, str, str]] = {
    "liver": (_ANATOMY, "10200004", "Liver"),
    "spleen": (_ANATOMY, "78961009", "Spleen"),
    "pancreas": (_ANATOMY, "15776009", "Pancreas"),
    "kidney": (_ANATOMY, "64033007", "Kidney"),
    "left kidney": (_ANATOMY, "18639004", "Left kidney"),
    "right kidney": (_ANATOMY, "9846003", "Right kidney"),
    "lung": (_ANATOMY, "39607008", "Lung"),
    "heart": (_ANATOMY, "80891009", "Heart"),
    "aorta": (_ANATOMY, "15825003", "Aorta"),
    "stomach": (_ANATOMY, "69695003", "Stomach"),
    "urinary bladder": (_ANATOMY, "89837001", "Urinary bladder"),
    "bladder": (_ANATOMY, "89837001", "Urinary bladder"),
    "prostate": (_ANATOMY, "41216001", "Prostate"),
    "brain": (_ANATOMY, "12738006", "Brain"),
    "cerebrum": (_ANATOMY, "83678007", "Cerebrum"),
    "cerebellum": (_ANATOMY, "113305005", "Cerebellum"),
    "brainstem": (_ANATOMY, "119238007", "Brain stem"),
    "brain stem": (_ANATOMY, "119238007", "Brain stem"),
    "ventricles": (_ANATOMY, "35764002", "Brain ventricle"),
    "vessels": (_ANATOMY, "59820001", "Blood vessel"),
    "bone": (_ANATOMY, "272673000", "Bone"),
    "tumor": (_ABNORMAL, "108369006", "Neoplasm"),
    "tumour": (_ABNORMAL, "108369006", "Neoplasm"),
    "neoplasm": (_ABNORMAL, "108369006", "Neoplasm"),
    "lesion": (_ABNORMAL, "52988006", "Lesion"),
    "nodule": (_ABNORMAL, "27925004", "Nodule"),
    "hemorrhage": (_ABNORMAL, "50960005", "Hemorrhage"),
    "haemorrhage": (_ABNORMAL, "50960005", "Hemorrhage"),
    "hematoma": (_ABNORMAL, "35566002", "Hematoma"),
    "edema": (_ABNORMAL, "79654002", "Edema"),
    "oedema": (_ABNORMAL, "79654002", "Edema"),
}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def known_code(name: str) -> tuple[hd.sr.CodedConcept, hd.sr.CodedConcept] | None:
    """``(category, type)`` SNOMED CT codes of a label name the node knows, else ``None``."""
    found = _KNOWN.get(_key(name))
    if found is None:
        return None
    category, value, meaning = found
    return category, hd.sr.CodedConcept(value, "SCT", meaning)


def segment_for(value: int, name: str) -> Segment:
    """The SEG segment of label ``value`` called ``name`` (see the module's docstring)."""
    label = (name.strip() or f"Label {value}")[:64]
    codes = known_code(name)
    if codes is None:
        codes = (GENERIC_CATEGORY, hd.sr.CodedConcept(f"AIN-BYOM-{value:04d}", "99AINODE", label))
    return Segment(label, codes[0], codes[1])


def label_names(raw: Mapping[str, Any]) -> dict[int, str]:
    """Label value → name from a labels table in any of the forms models write.

    Accepted: ``{"1": "liver"}`` (value → name), nnU-Net's ``{"background": 0, "liver": 1}``
    (name → value; a region given as a list of values takes its first), or either under a
    ``"labels"`` key. Value 0 (background) is left out.
    """
    table = raw.get("labels", raw) if isinstance(raw, Mapping) else raw
    if isinstance(table, list):
        table = {str(i): name for i, name in enumerate(table)}
    names: dict[int, str] = {}
    for key, item in dict(table).items():
        if str(key).lstrip("-").isdigit() and isinstance(item, str):
            names[int(key)] = item
        elif isinstance(item, int) or (isinstance(item, list) and item and isinstance(item[0], int)):
            names[int(item if isinstance(item, int) else item[0])] = str(key)
        else:
            raise ValueError(f"labels: cannot read entry {key!r}: {item!r}")
    names.pop(0, None)
    return dict(sorted(names.items()))


def read_labels_file(path: Path) -> dict[int, str]:
    """Label value → name from a JSON labels file (see :func:`label_names`)."""
    try:
        return label_names(json.loads(Path(path).read_text(encoding="utf-8")))
    except json.JSONDecodeError as exc:
        raise ValueError(f"labels file {Path(path).name} is not valid JSON: {exc}") from None
