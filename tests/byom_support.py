"""What the bring-your-own-model tests share: a small command model, phantom series, and
reading a SEG's segments back onto the source series' voxels."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom

__all__ = ["THRESHOLD_SCRIPT", "brain_series", "seg_label_volume", "threshold_labels", "write_script"]

THRESHOLD_SCRIPT = r'''
"""A stand-in vendor tool: labels bright voxels of the series in {input} as "Bright region" (1)
and very bright ones as "Tumor" (2); writes labels.nii.gz and labels.json into {output}."""
import json, sys
from pathlib import Path
import nibabel, numpy as np, pydicom

in_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
task = json.loads((in_dir / "task.json").read_text())
files = [pydicom.dcmread(p) for p in sorted(in_dir.glob("*.dcm"))]
assert all(ds.SeriesInstanceUID == task["info"]["uid"] for ds in files)
normal = np.cross(*np.reshape(np.asarray(files[0].ImageOrientationPatient, float), (2, 3)))
files.sort(key=lambda ds: float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))))
volume = np.stack([ds.pixel_array.astype(float) for ds in files])          # (slice, row, col)
labels = np.zeros(volume.shape, np.uint8)
hi = np.percentile(volume, 97)
labels[volume > np.percentile(volume, 85)] = 1
labels[volume > hi] = 2
first, last = files[0], files[-1]
iop = np.asarray(first.ImageOrientationPatient, float)
row_mm, col_mm = (float(v) for v in first.PixelSpacing)
origin = np.asarray(first.ImagePositionPatient, float)
step = (np.asarray(last.ImagePositionPatient, float) - origin) / max(1, len(files) - 1)
lps = np.eye(4)
lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = iop[:3] * col_mm, iop[3:] * row_mm, step, origin
ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
nibabel.save(nibabel.Nifti1Image(labels.transpose(2, 1, 0), ras), str(out_dir / "labels.nii.gz"))
(out_dir / "labels.json").write_text(json.dumps({"1": "Bright region", "2": "Tumor"}))
'''


def write_script(folder: Path, text: str, name: str = "model.py") -> Path:
    """An executable Python script ``folder/name`` run by this interpreter."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!{sys.executable}\n{text}")
    path.chmod(0o755)
    return path


def brain_series(out: Path, seed: int = 4242, **kwargs) -> tuple[list[pydicom.Dataset], list[Path]]:
    """A brain MR phantom's T1 series (datasets sorted inferior to superior) and its files."""
    from models.phantoms.brain_mr import generate_brain_mr, write_phantom

    phantom = generate_brain_mr(seed=seed, tumor=True, contrasts=("T1",), **kwargs)
    files = write_phantom(phantom, out)
    t1 = sorted(p for p in files if p.suffix == ".dcm" and p.parent.name == "T1")
    return phantom.series["T1"], t1


def threshold_labels(series: Sequence[pydicom.Dataset]) -> np.ndarray:
    """What :data:`THRESHOLD_SCRIPT` labels, computed directly: ``(slice, row, col)``."""
    volume = np.stack([ds.pixel_array.astype(float) for ds in series])
    labels = np.zeros(volume.shape, np.uint8)
    labels[volume > np.percentile(volume, 85)] = 1
    labels[volume > np.percentile(volume, 97)] = 2
    return labels


def seg_label_volume(seg: pydicom.Dataset, series: Sequence[pydicom.Dataset]) -> dict[str, np.ndarray]:
    """Segment label → ``(slice, row, col)`` mask on ``series`` (frames matched by referenced SOP Instance UID)."""
    index = {str(ds.SOPInstanceUID): i for i, ds in enumerate(series)}
    numbers = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    shape = (len(series), int(series[0].Rows), int(series[0].Columns))
    masks = {label: np.zeros(shape, bool) for label in numbers.values()}
    pixels = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    for f, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        uid = str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        masks[numbers[number]][index[uid]] |= pixels[f] > 0
    return masks


DICOM_SCRIPT = r'''
"""A stand-in tool that writes its own DICOM object (a Secondary Capture without series or
instance UIDs, which the node gives); with "wrong-study" it claims another study."""
import sys
from pathlib import Path
import numpy as np, pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

in_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
src = pydicom.dcmread(sorted(in_dir.glob("*.dcm"))[0])
ds = Dataset()
for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                "StudyTime", "AccessionNumber", "ReferringPhysicianName", "StudyID", "FrameOfReferenceUID"):
    if keyword in src:
        setattr(ds, keyword, getattr(src, keyword))
if sys.argv[3:] == ["wrong-study"]:
    ds.StudyInstanceUID = generate_uid()
ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
ds.Modality, ds.ConversionType, ds.InstanceNumber = "OT", "WSD", 1
ds.Rows = ds.Columns = 8
ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
ds.PixelData = np.zeros((8, 8), np.uint8).tobytes()
ds.file_meta = FileMetaDataset()
ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
ds.save_as(out_dir / "result.dcm", enforce_file_format=False)
'''

FAIL_SCRIPT = 'import sys\nprint("model weights corrupt", file=sys.stderr)\nsys.exit(1)\n'
HANG_SCRIPT = 'import time\ntime.sleep(3600)\n'
