"""Which transfer syntaxes the node accepts: those whose pixel data it can decode here.

The list is not fixed: it is what pydicom's pixel data decoders can decode in this
environment, asked once at start. The native syntaxes (Implicit and Explicit VR Little
Endian, Explicit VR Big Endian, Deflated) are always there; JPEG, JPEG-LS, JPEG 2000
and HTJ2K come with the decoder plugins that are installed (``pylibjpeg`` with
``pylibjpeg-libjpeg`` and ``pylibjpeg-openjpeg``, ``python-gdcm``, ``pillow``), RLE
Lossless with pydicom itself. Installing a plugin widens the list at the next start.
Instances are stored as received, never transcoded: accepting a syntax is a promise
that the model packs can read its pixels.
"""
from __future__ import annotations

from pydicom.pixels import get_decoder
from pydicom.uid import (
    UID,
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2K,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)

__all__ = ["NATIVE_TRANSFER_SYNTAXES", "decodable_transfer_syntaxes", "syntax_name"]

NATIVE_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)
"""Accepted whatever is installed: every object without compressed pixels (SR, KOS, SEG...) needs them."""

_MAY_BE_LOSSY = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless, JPEG2000, HTJ2K})


def decodable_transfer_syntaxes() -> list[UID]:
    """The native syntaxes, then every other syntax a pydicom decoder can decode here.

    The order is a preference: pynetdicom, as an association acceptor, gives a presentation
    context that offers several syntaxes the first of this list that it offers, so a
    sender offering uncompressed and compressed sends uncompressed, and one offering
    lossless and lossy compression sends lossless.

    Returns
    -------
    list of pydicom.uid.UID
        Native syntaxes first (in :data:`NATIVE_TRANSFER_SYNTAXES` order), then the
        lossless compressed ones, then those that may be lossy; no duplicates.
    """
    found: list[UID] = list(NATIVE_TRANSFER_SYNTAXES)
    for uid in AllTransferSyntaxes:
        if uid in found:
            continue
        try:
            available = get_decoder(uid).is_available
        except NotImplementedError:  # a syntax pydicom names but has no decoder for (MPEG, HEVC...)
            available = False
        if available:
            found.append(UID(uid))
    native = len(NATIVE_TRANSFER_SYNTAXES)
    return found[:native] + sorted(found[native:], key=lambda uid: uid in _MAY_BE_LOSSY)


def syntax_name(uid: str) -> str:
    """The name of a transfer syntax, or its UID when pydicom does not know it."""
    name = UID(uid).name
    return name if name and name != uid else str(uid)
