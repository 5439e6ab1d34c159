"""Where a result object goes: its series, its place in the series and the algorithm that made it.

Every builder of :mod:`node.results` takes one :class:`Placement` instead of repeating
the series and equipment keyword arguments; its constructor validates each field.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pydicom import Dataset

from .algorithm import AlgorithmInfo
from .checks import check_algorithm, check_positive_int, check_text, uid_or_new
from .equipment import highdicom_character_set

__all__ = ["Placement"]


@dataclass(frozen=True)
class Placement:
    """The series, instance number and algorithm of one result object.

    Parameters
    ----------
    algorithm:
        The model: equipment attributes (Manufacturer, Manufacturer's Model Name,
        Software Versions, Device Serial Number) and the Processing Algorithm item.
    series_number:
        Series Number of the result series (positive).
    series_description:
        Series Description (at most 64 characters).
    instance_number:
        Instance Number (positive).
    series_instance_uid:
        UID of the result series; a fresh UID when omitted (``None``), so that the
        objects built with one placement share their series.

    Raises
    ------
    TypeError
        When ``algorithm`` is not an :class:`~node.results.algorithm.AlgorithmInfo`.
    ValueError
        When a field has a wrong value; the message names it.
    """

    algorithm: AlgorithmInfo
    series_number: int
    series_description: str
    instance_number: int = 1
    series_instance_uid: str | None = None

    def __post_init__(self) -> None:
        check_algorithm(self.algorithm)
        check_text(self.series_description, "series_description", "SeriesDescription")
        check_positive_int(self.series_number, "series_number", "SeriesNumber")
        check_positive_int(self.instance_number, "instance_number", "InstanceNumber")
        uid = uid_or_new(self.series_instance_uid, "series_instance_uid")
        object.__setattr__(self, "series_instance_uid", uid)

    def numbered(self, instance_number: int) -> Placement:
        """This placement with another Instance Number (validated)."""
        return replace(self, instance_number=instance_number)

    def highdicom_arguments(self, source: Dataset) -> dict[str, Any]:
        """The series, equipment and character set keyword arguments of highdicom's object
        constructors, for an object derived from ``source`` (its Specific Character Set, as
        :func:`node.results.equipment.highdicom_character_set` gives it)."""
        return {
            "specific_character_set": highdicom_character_set(source),
            "series_instance_uid": self.series_instance_uid,
            "series_number": self.series_number,
            "instance_number": self.instance_number,
            "series_description": self.series_description,
            "manufacturer": self.algorithm.manufacturer,
            "manufacturer_model_name": self.algorithm.name,
            "software_versions": self.algorithm.version,
            "device_serial_number": self.algorithm.device_uid,
        }
