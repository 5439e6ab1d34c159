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
# the label image is written with axes (row, column, slice): voxel (r, c, s) -> LPS, then RAS
next_column, next_row = np.reshape(np.asarray(files[0].ImageOrientationPatient, float), (2, 3))
between_rows, between_columns = (float(v) for v in files[0].PixelSpacing)
corner = np.asarray(files[0].ImagePositionPatient, float)
through = (np.asarray(files[-1].ImagePositionPatient, float) - corner) / max(1, len(files) - 1)
voxel_to_lps = np.column_stack([next_row * between_rows, next_column * between_columns, through, corner])
affine = np.vstack([voxel_to_lps * np.array([[-1], [-1], [1]]), [0, 0, 0, 1]])
nibabel.save(nibabel.Nifti1Image(labels.transpose(1, 2, 0), affine), str(out_dir / "labels.nii.gz"))
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
        identified = frame if "SegmentIdentificationSequence" in frame else seg.SharedFunctionalGroupsSequence[0]
        number = int(identified.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
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


# -- a small MONAI bundle, written in MONAI's bundle layout -------------------------------------

BUNDLE_LABELS = {"0": "background", "1": "brain", "2": "tumor"}

BUNDLE_INFERENCE = {
    "imports": ["$import torch"],
    "bundle_root": ".",
    "device": "$torch.device('cpu')",
    "network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3,
                    "channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1},
    "network": "$@network_def.to(@device)",
    "preprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "image"},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "image", "pixdim": [2.5, 2.5, 5.0], "mode": "bilinear"},
        {"_target_": "ScaleIntensityd", "keys": "image"},
        {"_target_": "EnsureTyped", "keys": "image"},
    ]},
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [48, 48, 16], "sw_batch_size": 4, "overlap": 0.25},
    "postprocessing": {"_target_": "Compose", "transforms": [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
         "nearest_interp": False, "to_tensor": True},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        {"_target_": "SaveImaged", "keys": "pred", "output_dir": "$@bundle_root + '/eval'",
         "output_postfix": "seg", "separate_folder": False, "resample": False},
    ]},
}


def bundle_metadata(version: str = "0.1.0") -> dict:
    """``configs/metadata.json`` of the test bundle (MONAI's schema: network_data_format, channel_def)."""
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": version, "monai_version": "1.6.1", "pytorch_version": "2.13.0", "numpy_version": "2",
        "name": "Phantom brain and tumour", "task": "Brain and tumour segmentation on brain MR phantoms",
        "description": "A tiny UNet trained briefly on ainode's brain MR phantoms (tests only).",
        "authors": "ainode tests", "copyright": "none", "license": "none",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": "MR", "num_channels": 1,
                                 "spatial_shape": [48, 48, 16], "dtype": "float32", "value_range": [0, 1],
                                 "is_patch_data": True, "channel_def": {"0": "image"}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 3,
                                 "spatial_shape": [48, 48, 16], "dtype": "float32", "value_range": [0, 1, 2],
                                 "is_patch_data": True, "channel_def": BUNDLE_LABELS}},
        },
    }


def series_nifti(series: Sequence[pydicom.Dataset], path: Path, array: np.ndarray | None = None) -> Path:
    """The sorted ``series`` (or ``array`` on its voxels, ``(slice, row, col)``) as NIfTI with its RAS affine."""
    import nibabel

    first, last = series[0], series[-1]
    iop = np.asarray(first.ImageOrientationPatient, float)
    row_mm, col_mm = (float(v) for v in first.PixelSpacing)
    origin = np.asarray(first.ImagePositionPatient, float)
    step = (np.asarray(last.ImagePositionPatient, float) - origin) / max(1, len(series) - 1)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = iop[:3] * col_mm, iop[3:] * row_mm, step, origin
    if array is None:
        array = np.stack([ds.pixel_array.astype(np.float32) * float(ds.get("RescaleSlope", 1) or 1)
                          + float(ds.get("RescaleIntercept", 0) or 0) for ds in series])
    nibabel.save(nibabel.Nifti1Image(np.asarray(array).transpose(2, 1, 0), np.diag([-1.0, -1, 1, 1]) @ lps), str(path))
    return path


def make_bundle(root: Path, work: Path, steps: int = 40, seeds: Sequence[int] = (8101, 8102)) -> Path:
    """Write a MONAI bundle to ``root``: its configs, and a UNet trained ``steps`` steps on brain MR
    phantoms (label 1: brain structures, 2: tumour) through the bundle's own preprocessing."""
    import json

    import torch
    from models.phantoms.brain_mr import generate_brain_mr
    from monai.bundle import ConfigParser
    from monai.losses import DiceCELoss
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, Spacingd

    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    (root / "configs" / "inference.json").write_text(json.dumps(BUNDLE_INFERENCE, indent=2))
    (root / "configs" / "metadata.json").write_text(json.dumps(bundle_metadata(), indent=2))
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    parser["bundle_root"] = str(root)
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    pre = parser.get_parsed_content("preprocessing")
    label_pre = Compose([LoadImaged(keys="label"), EnsureChannelFirstd(keys="label"),
                         Orientationd(keys="label", axcodes="RAS"),
                         Spacingd(keys="label", pixdim=(2.5, 2.5, 5.0), mode="nearest")])
    work.mkdir(parents=True, exist_ok=True)
    examples = []
    for seed in seeds:
        phantom = generate_brain_mr(seed=seed, tumor=True, contrasts=("T1",), slices=16, size=96)
        series = phantom.series["T1"]
        merged = np.where(phantom.labels == 6, 2, np.where(phantom.labels > 0, 1, 0)).astype(np.uint8)
        image = pre({"image": str(series_nifti(series, work / f"{seed}-image.nii.gz"))})["image"]
        label = label_pre({"label": str(series_nifti(series, work / f"{seed}-label.nii.gz", merged))})["label"]
        examples.append((image.as_tensor()[None], label.as_tensor()[None].long()))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-2)
    network.train()
    for step in range(steps):
        image, label = examples[step % len(examples)]
        optimiser.zero_grad()
        loss = loss_fn(network(_pad16(image)), _pad16(label))
        loss.backward()
        optimiser.step()
    torch.save(network.state_dict(), root / "models" / "model.pt")
    return root


def _pad16(x):
    """Pad spatial sizes to multiples of 4 (the UNet's two strides)."""
    import torch.nn.functional as F

    pads = []
    for size in reversed(x.shape[2:]):
        pads += [0, (-size) % 4]
    return F.pad(x, pads)


def send_cases(node, cases: Sequence[str], folder: Path, seed_base: int, timeout: float = 300):
    """One brain MR phantom series per case (Series Description ``BYOM <case>``) sent to ``node``;
    returns each case's sorted series and, once every job has finished, its job by model name."""
    from tests.support import storescu, wait_for

    series_of = {}
    for n, case in enumerate(cases):
        series, files = brain_series(folder / case, seed=seed_base + n, slices=16, size=96)
        for ds, path in zip(series, files):
            ds.SeriesDescription = f"BYOM {case}"
            ds.save_as(path, enforce_file_format=True)
        storescu(files, node.dicom_port)
        series_of[case] = series

    def finished():
        jobs = {j["model"]: j for j in node.jobs()}
        done = all(c in jobs and jobs[c]["state"] in ("delivered", "failed") for c in cases)
        return jobs if done else None

    return series_of, wait_for(finished, timeout, what="jobs of " + ", ".join(cases))


def routes_for(cases: Sequence[str]) -> str:
    """A route per case: model ``case`` for the series described ``BYOM <case>``."""
    return "".join(f"""
[[routes]]
name = "{case}"
model = "{case}"
destinations = ["pacs"]
match = {{ Modality = "MR", SeriesDescription = "re:^BYOM {case}$" }}
""" for case in cases)


SEG = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


def seg_and_report(pacs, source: pydicom.Dataset, folder: Path) -> tuple[pydicom.Dataset, pydicom.Dataset]:
    """The SEG and the SR Orthanc holds for ``source``'s series (nothing else), each checked
    with ``dciodvfy`` and to be in the source study."""
    from tests.dicom_validation import dciodvfy_errors

    results = pacs.results_by_class(source.StudyInstanceUID, source.SeriesInstanceUID)
    assert set(results) == {SEG, COMPREHENSIVE_3D_SR}, sorted(results)
    (seg,), (sr,) = results[SEG], results[COMPREHENSIVE_3D_SR]
    for ds in (seg, sr):
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == [], f"{ds.SOPClassUID} fails dciodvfy"
        assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    return seg, sr


# -- a tiny nnU-Net v2 model, planned by nnU-Net and saved in its checkpoint format ------------

NNUNET_LABELS = {"background": 0, "brain": 1, "tumor": 2}


def make_nnunet_model(base: Path, steps: int = 15, seeds: Sequence[int] = (9101, 9102)) -> Path:
    """An nnU-Net v2 results folder for brain MR phantoms (1: brain structures, 2: tumour).

    nnU-Net plans it (``nnUNetv2_extract_fingerprint``, ``nnUNetv2_plan_experiment`` on a raw
    dataset of phantoms), its ``nnUNetTrainer`` builds the 3d_fullres network from the plans
    (features narrowed to keep the test small), the network is trained ``steps`` steps with
    nnU-Net's Dice + CE loss on z-scored phantoms, and the weights are saved as nnU-Net saves
    ``fold_0/checkpoint_final.pth``. Returns the results folder.
    """
    import json
    import os
    import subprocess

    raw, pre, results = base / "raw", base / "preprocessed", base / "results"
    dataset = raw / "Dataset501_Phantom"
    (dataset / "imagesTr").mkdir(parents=True, exist_ok=True)
    (dataset / "labelsTr").mkdir(exist_ok=True)
    from models.phantoms.brain_mr import generate_brain_mr

    examples = []
    for seed in seeds:
        phantom = generate_brain_mr(seed=seed, tumor=True, contrasts=("T1",), slices=16, size=96)
        series = phantom.series["T1"]
        merged = np.where(phantom.labels == 6, 2, np.where(phantom.labels > 0, 1, 0)).astype(np.uint8)
        series_nifti(series, dataset / "imagesTr" / f"phantom_{seed}_0000.nii.gz")
        series_nifti(series, dataset / "labelsTr" / f"phantom_{seed}.nii.gz", merged)
        examples.append((np.stack([ds.pixel_array.astype(np.float32) for ds in series]), merged))
    (dataset / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MRI"}, "labels": NNUNET_LABELS, "numTraining": len(seeds),
        "file_ending": ".nii.gz", "name": "Phantom", "version": "2.0"}))
    env = dict(os.environ, nnUNet_raw=str(raw), nnUNet_preprocessed=str(pre), nnUNet_results=str(results))
    bin_dir = Path(sys.executable).parent
    for tool in ("nnUNetv2_extract_fingerprint", "nnUNetv2_plan_experiment"):
        subprocess.run([str(bin_dir / tool), "-d", "501", "-np", "1"] if tool.endswith("fingerprint")
                       else [str(bin_dir / tool), "-d", "501"], env=env, check=True, capture_output=True)
    plans = json.loads((pre / "Dataset501_Phantom" / "nnUNetPlans.json").read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [min(f, 4 * 2 ** i) for i, f in enumerate(arch["features_per_stage"])]
    out = results / "Dataset501_Phantom" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (out / "fold_0").mkdir(parents=True, exist_ok=True)
    (out / "plans.json").write_text(json.dumps(plans, indent=2))
    (out / "dataset.json").write_text((dataset / "dataset.json").read_text())
    weights = _train_nnunet(plans, json.loads((out / "dataset.json").read_text()), examples, steps)
    import torch

    torch.save({"network_weights": weights, "trainer_name": "nnUNetTrainer",
                "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0,
                              "dataset_json": json.loads((out / "dataset.json").read_text()), "device": "cpu"},
                "inference_allowed_mirroring_axes": (0, 1, 2), "current_epoch": 1, "optimizer_state": {},
                "grad_scaler_state": None, "logging": {}, "_best_ema": None},
               out / "fold_0" / "checkpoint_final.pth")
    return out


def _train_nnunet(plans: dict, dataset_json: dict, examples, steps: int) -> dict:
    """The 3d_fullres network nnUNetTrainer builds from ``plans``, trained ``steps`` steps; its state dict."""
    import torch
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(plans)
    configuration = manager.get_configuration("3d_fullres")
    torch.manual_seed(0)
    network = nnUNetTrainer.build_network_architecture(manager, configuration, 1, 3, enable_deep_supervision=False)
    loss_fn = DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                             weight_ce=1, weight_dice=1, dice_class=MemoryEfficientSoftDiceLoss)
    optimiser = torch.optim.Adam(network.parameters(), lr=1e-2)
    patch = configuration.patch_size
    network.train()
    for step in range(steps):
        image, label = examples[step % len(examples)]
        image = (image - image.mean()) / max(float(image.std()), 1e-8)  # nnU-Net's z-score for MRI
        x = torch.from_numpy(_fit(image, patch))[None, None]
        y = torch.from_numpy(_fit(label.astype(np.float32), patch))[None, None]
        optimiser.zero_grad()
        loss = loss_fn(network(x), y)
        loss.backward()
        optimiser.step()
    return network.state_dict()


def _fit(volume: np.ndarray, patch: Sequence[int]) -> np.ndarray:
    """``volume`` cropped or zero-padded (centred) to ``patch``."""
    out = np.zeros(tuple(patch), np.float32)
    src, dst = [], []
    for size, want in zip(volume.shape, patch):
        if size >= want:
            start = (size - want) // 2
            src.append(slice(start, start + want))
            dst.append(slice(0, want))
        else:
            start = (want - size) // 2
            src.append(slice(0, size))
            dst.append(slice(start, start + size))
    out[tuple(dst)] = volume[tuple(src)]
    return out
