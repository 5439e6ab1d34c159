"""A minimal NIfTI-1 reader and writer (numpy only; nibabel is not required).

Supports single-file ``.nii`` and gzipped ``.nii.gz`` NIfTI-1 images of 3 dimensions
(a 4th dimension of length 1 is dropped), integer or float data, little or big endian.
The voxel→world (RAS mm) affine comes from the sform when ``sform_code > 0``, else from
the qform (quaternion) when ``qform_code > 0``, else from the pixel dimensions.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

__all__ = ["read_nifti", "write_nifti"]

_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4"}
_CODES = {np.dtype(v).str[1:]: k for k, v in _DTYPES.items()}


def read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI-1 file.

    Returns
    -------
    tuple
        ``(data, affine)``: ``data`` indexed ``[i, j, k]`` as stored (NIfTI voxel
        order), ``affine`` the 4x4 voxel → RAS mm matrix.

    Raises
    ------
    ValueError
        When the file is not a NIfTI-1 single file, or its data type or dimensions are
        not supported.
    """
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 352:
        raise ValueError(f"{path}: too short for a NIfTI-1 header")
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    if struct.unpack(endian + "i", raw[:4])[0] != 348 or raw[344:347] not in (b"n+1", b"ni1"):
        raise ValueError(f"{path}: not a NIfTI-1 file")
    dim = struct.unpack(endian + "8h", raw[40:56])
    datatype = struct.unpack(endian + "h", raw[70:72])[0]
    pixdim = struct.unpack(endian + "8f", raw[76:108])
    vox_offset = int(struct.unpack(endian + "f", raw[108:112])[0])
    slope, inter = struct.unpack(endian + "2f", raw[112:120])
    qform_code, sform_code = struct.unpack(endian + "2h", raw[252:256])
    quatern = struct.unpack(endian + "6f", raw[256:280])
    srow = np.array(struct.unpack(endian + "12f", raw[280:328]), dtype=float).reshape(3, 4)
    ndim = dim[0]
    shape = tuple(int(d) for d in dim[1:1 + ndim])
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise ValueError(f"{path}: only 3-D images are supported, got dimensions {shape}")
    if datatype not in _DTYPES:
        raise ValueError(f"{path}: unsupported NIfTI datatype {datatype}")
    dtype = np.dtype(endian + _DTYPES[datatype])
    count = int(np.prod(shape))
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=vox_offset).reshape(shape, order="F")
    if slope not in (0.0, 1.0) or inter != 0.0:
        data = data * (slope or 1.0) + inter
    affine = np.eye(4)
    if sform_code > 0:
        affine[:3] = srow
    elif qform_code > 0:
        affine = _qform_affine(quatern, pixdim)
    else:
        affine[0, 0], affine[1, 1], affine[2, 2] = pixdim[1:4]
    return np.asarray(data), affine


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Write a 3-D array as NIfTI-1 (gzipped when ``path`` ends in ``.gz``).

    Parameters
    ----------
    path:
        Output file.
    data:
        Array indexed ``[i, j, k]`` in NIfTI voxel order.
    affine:
        4x4 voxel → RAS mm matrix, written as the sform (and qform code 0).
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"data must be 3-D, got shape {data.shape}")
    code = _CODES.get(data.dtype.str[1:])
    if code is None:
        raise ValueError(f"unsupported dtype {data.dtype}")
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *data.shape, 1, 1, 1, 1)
    struct.pack_into("<2h", header, 70, code, data.dtype.itemsize * 8)
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    struct.pack_into("<8f", header, 76, 1.0, *spacing, 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<f", header, 108, 352.0)
    struct.pack_into("<2f", header, 112, 1.0, 0.0)
    header[123] = 10  # xyzt_units: mm, s
    struct.pack_into("<2h", header, 252, 0, 2)
    struct.pack_into("<12f", header, 280, *np.asarray(affine, dtype=float)[:3].ravel())
    header[344:348] = b"n+1\0"
    payload = bytes(header) + np.asarray(data, dtype=data.dtype.newbyteorder("<")).tobytes(order="F")
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6)
    Path(path).write_bytes(payload)


def _qform_affine(quatern: tuple[float, ...], pixdim: tuple[float, ...]) -> np.ndarray:
    b, c, d, qx, qy, qz = quatern
    a = np.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d)))
    rotation = np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - b * b - c * c],
    ])
    qfac = -1.0 if pixdim[0] < 0 else 1.0
    scale = np.array([pixdim[1], pixdim[2], pixdim[3] * qfac])
    affine = np.eye(4)
    affine[:3, :3] = rotation * scale
    affine[:3, 3] = (qx, qy, qz)
    return affine
