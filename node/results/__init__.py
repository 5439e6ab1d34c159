"""Result writers: model findings as standard DICOM objects (SEG, SR, KOS, SC, STL).

Every object is written into the source study with the source's patient and
study attributes and character set, and carries the IHE AI Results "Processing
Algorithm" item in its Contributing Equipment Sequence. Every builder takes a
:class:`Placement` (series, instance number, algorithm); the checks they share are in
:mod:`node.results.checks`.
"""
from .equipment import (
    PROCESSING_ALGORITHM,
    add_processing_algorithm,
    algorithm_identification,
    copy_character_set,
    copy_patient_and_study,
)
from .ko import build_key_object_selection
from .placement import Placement
from .planar_sr import PlanarFindingGroup, build_planar_report
from .sc import OverlaySeries, build_overlay_sc
from .seg import Segment, build_binary_seg, build_segmentation
from .sr import FindingGroup, build_measurement_report
from .stl import build_encapsulated_stl

__all__ = [
    "PROCESSING_ALGORITHM",
    "FindingGroup",
    "OverlaySeries",
    "PlanarFindingGroup",
    "Placement",
    "Segment",
    "add_processing_algorithm",
    "algorithm_identification",
    "build_binary_seg",
    "build_encapsulated_stl",
    "build_key_object_selection",
    "build_measurement_report",
    "build_overlay_sc",
    "build_planar_report",
    "build_segmentation",
    "copy_character_set",
    "copy_patient_and_study",
]
