"""Brain MR phantom scanner: tissue intensities per contrast, texture, blur, bias field and
Rician noise (:func:`render`), and the MR Image series of a study (:func:`series_datasets`)."""
from __future__ import annotations

import numpy as np
from pydicom import Dataset
from pydicom.uid import MRImageStorage, generate_uid
from scipy import ndimage

from models.phantoms.brain_mr_geometry import TISSUES, BrainMRStyle, Grid, smooth_noise
from models.phantoms.ct_series import Patient, SeriesSpec, Study, build_series

__all__ = ["CONTRASTS", "render", "series_datasets"]

CONTRASTS: tuple[str, ...] = ("T1", "T2")
"""Contrasts the phantom renders."""

# Tissue intensities (arbitrary units) per contrast.
_INTENSITY = {
    "T1": dict(air=0, skin=450, fat=900, bone=60, diploe=650, csf=180, gm=520, wm=780,
               deep=600, cbl_gm=540, cbl_wm=760, stem=720, vessel=1150, rim=1100, core=300,
               solid=1000, edema=560),
    "T2": dict(air=0, skin=350, fat=450, bone=40, diploe=300, csf=1400, gm=520, wm=330,
               deep=480, cbl_gm=560, cbl_wm=340, stem=380, vessel=60, rim=700, core=1200,
               solid=800, edema=850),
}
_SEQUENCE = {
    "T1": dict(ScanningSequence="SE", SequenceVariant="SP", ScanOptions="", MRAcquisitionType="2D",
               RepetitionTime="500", EchoTime="12", EchoTrainLength=1, ContrastBolusAgent="Gadolinium",
               description="T1 SE post-contrast 4mm phantom", window=(700.0, 1400.0), number=3),
    "T2": dict(ScanningSequence="SE", SequenceVariant=["SK", "SP"], ScanOptions="", MRAcquisitionType="2D",
               RepetitionTime="4000", EchoTime="250", EchoTrainLength=128, ContrastBolusAgent=None,
               description="Heavy T2 TSE 4mm phantom", window=(700.0, 1400.0), number=2),
}



def render(tissue: np.ndarray, contrast: str, rng: np.random.Generator, grid: Grid,
           style: BrainMRStyle | None = None) -> np.ndarray:
    """Stored values of one contrast (the scanner's part in ``style``'s way when given)."""
    jitter, blur = (style.contrast_jitter, style.blur) if style else (0.08, 0.6)
    table = np.array([_INTENSITY[contrast][name] for name in TISSUES], dtype=np.float32)
    table *= rng.uniform(1.0 - jitter, 1.0 + jitter, size=table.shape).astype(np.float32)
    table[0] = 0.0
    image = table[tissue]
    image *= 1.0 + 0.06 * smooth_noise(rng, image.shape, (8, 24, 24))  # tissue texture
    image = ndimage.gaussian_filter(image, sigma=(0, blur, blur))
    # the plain draws are made with a style too, so that the random stream stays the plain one's
    amplitude = rng.uniform(0.15, 0.3)
    bias = 1.0 + (style.bias if style else amplitude) * np.tanh(smooth_noise(rng, image.shape, (3, 3, 3)))
    image *= bias
    sigma = rng.uniform(0.02, 0.04) * 800.0
    if style is not None:
        sigma = style.noise * 800.0
    real = image + rng.normal(0.0, sigma, image.shape)
    imag = rng.normal(0.0, sigma, image.shape)
    magnitude = np.sqrt(real ** 2 + imag ** 2)
    if style is not None:
        magnitude *= style.gain
    return np.clip(np.rint(magnitude), 0, 4095).astype(np.uint16)


def series_datasets(
    images: dict[str, np.ndarray], contrasts: tuple[str, ...], grid: Grid, patient: Patient, seed: int,
) -> dict[str, list[Dataset]]:
    """The MR Image series of each of ``contrasts`` (one study, one frame of reference)."""
    study = Study(
        instance_uid=generate_uid(),
        date="20260120",
        time=f"{8 + seed % 10:02d}{seed % 60:02d}00",
        accession_number=f"MR{seed % 10**12:012d}"[:16],
        study_id=str(seed % 10**8),
        description="MR BRAIN W WO CONTRAST",
    )
    frame_uid = generate_uid()
    out: dict[str, list[Dataset]] = {}
    for contrast in contrasts:
        seq = dict(_SEQUENCE[contrast])
        description, window, number = seq.pop("description"), seq.pop("window"), seq.pop("number")
        extra = {k: val for k, val in seq.items() if val is not None}
        extra.update(MagneticFieldStrength="3", ImagingFrequency="127.7", ImagedNucleus="1H",
                     PatientOrientation=["L", "P"])
        spec = SeriesSpec(
            modality="MR",
            sop_class_uid=MRImageStorage,
            body_part="BRAIN",
            series_number=number,
            description=description,
            image_type=("ORIGINAL", "PRIMARY", "M", "NONE"),
            rescale=None,
            window=window,
            kvp=None,
            frame_of_reference_uid=frame_uid,
            extra=extra,
        )
        out[contrast] = build_series(
            images[contrast].astype(np.int32),
            (grid.spacing, grid.spacing),
            grid.slice_mm,
            z_origin=grid.origin[2],
            xy_origin=grid.origin[:2],
            patient=patient,
            study=study,
            series=spec,
        )
    return out

