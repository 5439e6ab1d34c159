"""The base class of the chest radiograph packs (:mod:`models.cxr_nodule`, :mod:`models.cxr_pneumonia`)."""
from __future__ import annotations

from node.dicom.attributes import RADIOGRAPH
from node.packs.base import PackBase

__all__ = ["RadiographPack"]


class RadiographPack(PackBase):
    """A pack that reads one radiograph at a time (:mod:`models.radiograph`).

    Every image is checked at load against :data:`~node.dicom.attributes.RADIOGRAPH`: Pixel
    Spacing optional (CR's 0\\0 means unknown), no plane geometry. A radiograph series has
    few images: four go to the model at a time.
    """

    required_attributes = RADIOGRAPH
    batch_size = 4
