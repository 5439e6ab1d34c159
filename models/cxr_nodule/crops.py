"""Training crops of the CXR nodule U-Net: windows, embedded nodules, mined false positives, pixel weights."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from models.cxr_nodule.evaluation import CANDIDATE_THRESHOLD
from models.cxr_nodule.froc import matched_nodule
from models.cxr_nodule.implants import Implant, embed
from models.cxr_nodule.preprocess import detail_sigma, model_detections, model_input
from models.cxr_nodule.samples import Sample

__all__ = [
    "CROP", "crop_window", "dilate", "implanted_input", "mine_false_positives", "prepared_inputs", "size_weights",
    "training_crops",
]

CROP = 96
"""Default edge of a training crop (model pixels of a 256 grid)."""


def prepared_inputs(sample: Sample, with_twin: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`model_input` of a sample's radiograph (and of its twin when ``with_twin``), as float16.

    Computed once per sample before training: a crop of it is exactly the crop's network input
    (the detail channel is a property of the whole image), so no step recomputes a Gaussian.
    """
    image = model_input(np.asarray(sample.image, dtype=np.float32)).astype(np.float16)
    twin = model_input(np.asarray(sample.twin, dtype=np.float32)).astype(np.float16) if with_twin else None
    return image, twin


def implanted_input(
    sample: Sample, r0: int, c0: int, crop: int, bank: Sequence[Implant], rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The network input and mask of one crop with one or two nodules of ``bank`` embedded in
    its lungs (:func:`~models.cxr_nodule.implants.embed`). The detail channel is computed on
    the crop and 4 sigma around it, the reach of its Gaussian, so it equals the whole image's
    there."""
    size = sample.image.shape[-1]
    sigma = detail_sigma(size)
    margin = int(np.ceil(4 * sigma)) + 1
    e0, e1 = max(r0 - margin, 0), min(r0 + crop + margin, size)
    f0, f1 = max(c0 - margin, 0), min(c0 + crop + margin, size)
    image = sample.image[e0:e1, f0:f1].astype(np.float32)
    mask = sample.mask[e0:e1, f0:f1].copy()
    inside = np.zeros(image.shape, dtype=bool)   # implants centred inside the crop itself
    inside[r0 - e0:r0 - e0 + crop, c0 - f0:c0 - f0 + crop] = sample.placeable[r0:r0 + crop, c0:c0 + crop]
    if inside.any():
        for _ in range(int(rng.integers(1, 3))):
            embed(image, mask, inside, sample.value_scale, bank[int(rng.integers(len(bank)))], rng)
    np.clip(image, 0.0, 1.0, out=image)
    cut = (slice(r0 - e0, r0 - e0 + crop), slice(c0 - f0, c0 - f0 + crop))
    return model_input(image, sigma)[(slice(None),) + cut], mask[cut]


def crop_window(sample: Sample, rng: np.random.Generator, crop: int = CROP,
                nodule_crops: float = 0.8, centre: tuple[float, float] | None = None) -> tuple[int, int, bool]:
    """``(row, column, mirrored)`` of one training crop: around ``centre`` when given (a mined
    false positive), else with probability ``nodule_crops`` around one of the sample's nodules,
    else anywhere on the image; centred crops are jittered."""
    size = sample.image.shape[0]
    if centre is None and sample.truths and rng.random() < nodule_crops:
        centre = sample.truths[int(rng.integers(len(sample.truths)))][:2]
    if centre is not None:
        jitter = int(round(crop * 40 / CROP))
        r0 = int(np.clip(centre[0] - crop / 2 + rng.integers(-jitter, jitter + 1), 0, size - crop))
        c0 = int(np.clip(centre[1] - crop / 2 + rng.integers(-jitter, jitter + 1), 0, size - crop))
    else:
        # anywhere on the image: a model that never saw the neck and shoulders in
        # training answers there with confident false positives at inference
        r0 = int(rng.integers(0, size - crop + 1))
        c0 = int(rng.integers(0, size - crop + 1))
    return r0, c0, bool(rng.random() < 0.5)


def training_crops(
    batch: Sequence[Sample], prepared: Sequence[tuple[np.ndarray, np.ndarray | None]], rng: np.random.Generator,
    crop: int = CROP, nodule_crops: float = 0.8, with_twin: bool = True,
    centres: Sequence[tuple[float, float] | None] | None = None,
    bank: Sequence[Implant] = (), implant_crops: float = 0.0,
):
    """Training crops of image, twin (zeros unless ``with_twin``) and mask.

    ``prepared``: :func:`prepared_inputs` of each sample of ``batch``, in the same order;
    ``centres``: per sample, ``None`` or the point its crop is centred on (:func:`crop_window`);
    ``bank``, ``implant_crops``: nodules embedded in that share of the crops (:func:`fit`).
    """
    imgs, twins, masks = [], [], []
    for k, (s, (image_input, twin_input)) in enumerate(zip(batch, prepared)):
        centre = centres[k] if centres else None
        r0, c0, flip = crop_window(s, rng, crop, nodule_crops, centre)
        window = (slice(None), slice(r0, r0 + crop), slice(c0, c0 + crop))
        crop_mask = s.mask[r0:r0 + crop, c0:c0 + crop]
        if bank and s.placeable is not None and centre is None and rng.random() < implant_crops:
            image_crop, crop_mask = implanted_input(s, r0, c0, crop, bank, rng)
        else:
            image_crop = image_input[window]
        sources = [(imgs, image_crop), (masks, crop_mask)]
        if with_twin and twin_input is not None:
            sources.append((twins, twin_input[window]))
        else:
            twins.append(np.zeros((2, crop, crop), dtype=np.float32))
        for target, piece in sources:
            target.append(piece[..., ::-1] if flip else piece)
    return (
        np.ascontiguousarray(np.stack(imgs), dtype=np.float32),
        np.ascontiguousarray(np.stack(twins), dtype=np.float32),
        np.ascontiguousarray(np.stack(masks), dtype=np.float32),
    )


def mine_false_positives(
    net: Any, samples: Sequence[Sample], prepared: Sequence[tuple[np.ndarray, np.ndarray | None]],
    indices: Sequence[int], batch: int = 4,
) -> list[tuple[int, float, float, float]]:
    """``(sample index, row, col, score)`` of every candidate (:func:`model_detections`) on the
    whole radiographs ``indices`` whose centre hits no nodule, the strongest first."""
    import torch

    net.eval()
    found = []
    with torch.no_grad():
        for start in range(0, len(indices), batch):
            chunk = [int(i) for i in indices[start:start + batch]]
            x = torch.from_numpy(np.stack([prepared[i][0] for i in chunk]).astype(np.float32))
            for i, logits in zip(chunk, net(x).numpy()):
                for row, col, score, _ in model_detections(logits, CANDIDATE_THRESHOLD):
                    if matched_nodule(row, col, samples[i].truths) is None:
                        found.append((i, row, col, score))
    return sorted(found, key=lambda f: -f[3])


def size_weights(mask: np.ndarray, size: int, boost: float) -> np.ndarray:
    """Per-pixel weights: 1 off nodules, ``clip(A15 / area, 1, boost)`` on each nodule's pixels."""
    radius_15 = 7.5 / (430.0 / size)
    area_15 = np.pi * radius_15 ** 2
    out = np.ones(mask.shape, dtype=np.float32)
    for i, m in enumerate(mask):
        labels, n = ndimage.label(m > 0.5)
        if n:
            areas = ndimage.sum_labels(np.ones_like(m), labels, index=np.arange(1, n + 1))
            w = np.clip(area_15 / np.maximum(areas, 1.0), 1.0, boost).astype(np.float32)
            out[i][labels > 0] = w[labels[labels > 0] - 1]
    return out


def dilate(mask: np.ndarray) -> np.ndarray:
    """Nodule masks of a batch grown by three pixels."""
    return ndimage.binary_dilation(mask > 0.5, iterations=3, axes=(1, 2)).astype(np.float32)
