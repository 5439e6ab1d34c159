"""JPEG 2000 radiographs decoded at a lower resolution level for the CXR models (real CR from pydicom-data)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pydicom
import pytest
from pydicom.data import get_testdata_file

from models.cxr_nodule.pack import CXRNodulePack
from models.cxr_nodule.preprocess import model_input
from models.radiograph import normalise, read_radiograph, resample, to_model
from node.dicom.reduced_decode import _level, decode_reduced


def _real(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file(name))


@pytest.mark.parametrize("name", ["RG1_J2KR.dcm", "RG1_J2KI.dcm", "RG3_J2KR.dcm"])
def test_a_real_cr_decodes_at_half_resolution_with_the_full_decode_s_values(name: str):
    full = _real(name).pixel_array.astype(np.float64)
    reduced = decode_reduced(_real(name), 768)
    assert reduced is not None and reduced.factor == 2
    rows, cols = full.shape
    assert reduced.pixels.shape == (-(-rows // 2), -(-cols // 2))
    # sample k lies on source sample 2k: closer to it than to the 2 x 2 block mean it would be
    # if it were shifted by half a source pixel
    on_grid = full[::2, ::2]
    shifted = full[1::2, 1::2][: on_grid.shape[0] - 1, : on_grid.shape[1] - 1]
    pixels = reduced.pixels.astype(np.float64)
    span = full.max() - full.min()
    assert np.abs(pixels - on_grid).mean() < 0.01 * span
    assert np.abs(pixels - on_grid).mean() < np.abs(pixels[:-1, :-1] - shifted).mean()
    assert abs(np.median(pixels) - np.median(full)) < 0.01 * span, "the same scale as the stored values"


def test_what_is_not_an_unsigned_one_sample_j2k_image_is_decoded_in_full():
    assert decode_reduced(_real("693_J2KR.dcm"), 64) is None, "signed CT"
    assert decode_reduced(_real("US1_J2KR.dcm"), 64) is None, "RGB ultrasound"
    assert decode_reduced(_real("CT_small.dcm"), 16) is None, "not JPEG 2000"
    decoded = _real("RG1_J2KR.dcm")
    decoded.pixel_array  # noqa: B018 (the pixels are decoded already: nothing to save)
    assert decode_reduced(decoded, 768) is None
    assert decode_reduced(_real("RG1_J2KR.dcm"), 1000) is None, "half of 1955 is under 1000"


def test_the_level_stops_where_pillow_would_size_the_image_wrongly():
    assert _level(1955, 1841, 384) == 1  # 1841 / 4: Pillow rounds to 460, OpenJPEG gives 461
    assert _level(2048, 2048, 384) == 2
    assert _level(2048, 2048, 2048) == 0


def test_the_model_input_and_the_nodules_of_a_real_cr_do_not_depend_on_the_decode():
    pack = CXRNodulePack()
    session = ort.InferenceSession(str(pack.model_path()), providers=["CPUExecutionProvider"])
    ds = _real("RG1_J2KR.dcm")
    fast, fast_geometry = to_model(ds, pack.input_size)
    full, full_geometry = resample(read_radiograph(_real("RG1_J2KR.dcm")), pack.input_size)
    full = normalise(full)
    assert fast_geometry == full_geometry
    assert np.abs(fast - full).mean() < 0.002
    found = {}
    for name, image in (("reduced", fast), ("full", full)):
        logits = session.run(None, {"image": model_input(image)[np.newaxis]})[0]
        found[name] = pack.postprocess([ds], {"logits": logits}).detections[0]
    assert len(found["reduced"]) == len(found["full"]) > 0
    near = [min(np.hypot(a.row - b.row, a.col - b.col) for b in found["full"]) for a in found["reduced"]]
    assert np.mean(np.array(near) <= 8.0) >= 0.9, near


def test_the_pneumonia_pack_decodes_a_real_cr_in_full_once_for_its_input_and_its_heatmap():
    from models.cxr_pneumonia.preprocess import preprocess

    ds = _real("RG1_J2KR.dcm")
    preprocess([ds])
    assert ds._pixel_array is not None, "the full decode is kept for the overlay"
    ds = _real("RG1_J2KR.dcm")
    to_model(ds, 512)
    assert ds._pixel_array is None, "the nodule pack's input needs no full decode"
