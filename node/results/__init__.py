"""Result writers: model findings as standard DICOM objects (SEG, SR, SC).

Every object is written into the source study with the source's patient and
study attributes and character set, and carries the IHE AI Results "Processing
Algorithm" item in its Contributing Equipment Sequence.
"""
from node.results.equipment import (
    PROCESSING_ALGORITHM,
    add_processing_algorithm,
    algorithm_identification,
    copy_character_set,
    copy_patient_and_study,
)
from node.results.sc import build_overlay_sc
from node.results.seg import build_binary_seg
from node.results.sr import FindingGroup, build_measurement_report

__all__ = [
    "PROCESSING_ALGORITHM",
    "FindingGroup",
    "add_processing_algorithm",
    "algorithm_identification",
    "build_binary_seg",
    "build_measurement_report",
    "build_overlay_sc",
    "copy_character_set",
    "copy_patient_and_study",
]
