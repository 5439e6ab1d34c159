"""Fitting the CXR nodule U-Net: soft Dice + BCE on crops, the NAC term on the pair, and its ONNX export."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from models.cxr_nodule.crops import CROP, dilate, mine_false_positives, prepared_inputs, size_weights, training_crops
from models.cxr_nodule.implants import nodule_bank
from models.cxr_nodule.preprocess import INPUT_NAME, MODEL_SIZE, OUTPUT_NAME
from models.cxr_nodule.samples import Sample
from models.training import epoch_batches, one_cycle, optimise, seed_torch
from models.training import export_onnx as _export_onnx

__all__ = ["export_onnx", "fit"]


def export_onnx(net: Any, path: Path, size: int = MODEL_SIZE) -> None:
    """Export ``image -> logits`` (opset 17, dynamic batch axis)."""
    _export_onnx(net, (1, 2, size, size), path, input_name=INPUT_NAME, output_names=[OUTPUT_NAME])


def fit(
    samples: Sequence[Sample],
    *,
    epochs: int,
    nac_weight: float = 0.0,
    batch_size: int = 8,
    learning_rate: float = 2e-3,
    channels: tuple[int, ...] = (8, 16, 32, 48),
    seed: int = 0,
    threads: int = 1,
    crop: int = CROP,
    nodule_crops: float = 0.8,
    nac_warmup: int = 0,
    small_boost: float = 1.0,
    hard_negative_crops: float = 0.0,
    hard_negative_every: int = 3,
    mine_images: int = 400,
    implant_crops: float = 0.0,
    init: Path | None = None,
    log: Callable[[str], None] | None = None,
):
    """Train a U-Net on ``samples``; returns ``(net, final loss)``.

    ``small_boost`` > 1 weights the cross-entropy of each nodule's pixels by
    ``clip(A15 / area, 1, small_boost)`` (``A15`` = the area of a 15 mm nodule on the grid),
    so that a small nodule counts about as much as a large one instead of by its pixels.

    ``crop``: edge of the square training crops (model pixels); ``nodule_crops``: the share
    of crops placed around a nodule; ``nac_warmup``: epochs trained without the NAC term
    before it is switched on (its weight then ramps linearly to ``nac_weight`` over one epoch).

    ``hard_negative_crops`` > 0: every ``hard_negative_every`` epochs the network looks at
    ``mine_images`` training radiographs whole (:func:`mine_false_positives`), and that share
    of the next epochs' crops is centred on a false positive it found there (each alike), so
    that the responses which set the 0.2 FP/image threshold are the ones trained away.

    ``implant_crops`` > 0: that share of the crops (other than those on mined false positives)
    get one or two nodules of other training radiographs embedded in their lungs
    (:mod:`.implants`).
    ``init``: a ``model.pt`` of the same ``channels`` to start from (fine-tuning) instead of
    random weights.
    """
    import torch

    from models.cxr_nodule.net import NoduleUNet

    rng = seed_torch(seed, threads)
    net = NoduleUNet(channels)
    if init is not None:
        net.load_state_dict(torch.load(init))
    optimiser = torch.optim.Adam(net.parameters(), lr=learning_rate)
    steps_per_epoch = max(1, len(samples) // batch_size)
    scheduler = one_cycle(optimiser, learning_rate, epochs * steps_per_epoch)
    loss_value = float("nan")
    prepared = [prepared_inputs(s, with_twin=nac_weight > 0 and s.has_twin) for s in samples]
    mined: list[tuple[int, float, float, float]] = []
    bank = nodule_bank(samples) if implant_crops > 0 else []
    if log and bank:
        log(f"  {len(bank)} nodules to embed in other radiographs")
    for epoch in range(epochs):
        if hard_negative_crops > 0 and epoch % max(1, hard_negative_every) == 0 and (init is not None or epoch > 0):
            subset = rng.choice(len(samples), size=min(mine_images, len(samples)), replace=False)
            mined = mine_false_positives(net, samples, prepared, subset)
            if log:
                log(f"  mined {len(mined)} false positives on {len(subset)} training images"
                    f" ({sum(m[3] >= 0.5 for m in mined)} scoring >= 0.5)")
            net.train()
        total = 0.0
        parts = np.zeros(6)  # dice, bce, nac top-1 %, nac consistency, mean p on nodules, mean p elsewhere
        net.train()
        for step, order in enumerate(epoch_batches(rng, len(samples), batch_size, steps_per_epoch)):
            chosen = list(order)
            ramp = min(1.0, (epoch - nac_warmup + (step + 1) / steps_per_epoch)) if epoch >= nac_warmup else 0.0
            w_nac = nac_weight * ramp
            centres: list[tuple[float, float] | None] = [None] * len(chosen)
            if mined:
                for k in range(len(chosen)):
                    if rng.random() < hard_negative_crops:
                        index, row, col, _ = mined[int(rng.integers(len(mined)))]
                        chosen[k], centres[k] = index, (row, col)
            batch = [samples[i] for i in chosen]
            crops = training_crops(batch, [prepared[i] for i in chosen], rng, crop, nodule_crops, with_twin=w_nac > 0,
                                   centres=centres, bank=bank, implant_crops=implant_crops)
            loss, terms = _loss(net, batch, crops, w_nac, small_boost)
            total += optimise(optimiser, scheduler, loss)
            parts += terms
        loss_value = total / steps_per_epoch
        if log:
            d, b, t, c, p_on, p_off = parts / steps_per_epoch
            log(f"  epoch {epoch + 1}/{epochs} loss {loss_value:.4f} (dice {d:.3f}, bce {b:.3f}, NAC weight {w_nac:.3g}:"
                f" twin top-1% {t:.3f}, consistency {c:.4f}; mean p on nodules {p_on:.3f}, elsewhere {p_off:.4f})")
    net.eval()
    return net, loss_value


def _loss(net: Any, batch: Sequence[Sample], crops: tuple[np.ndarray, np.ndarray, np.ndarray], w_nac: float,
          small_boost: float) -> tuple[Any, list[float]]:
    """The loss of one batch of crops and its terms (dice, bce, NAC top-1 %, NAC consistency, mean p on
    nodules, mean p elsewhere)."""
    import torch
    import torch.nn.functional as F

    img, twin, mask = crops
    paired = torch.tensor([float(s.has_twin) for s in batch])
    x = torch.from_numpy(img)
    y = torch.from_numpy(mask)[:, None]
    pixel_weight = None
    if small_boost > 1.0:
        pixel_weight = torch.from_numpy(size_weights(mask, batch[0].image.shape[-1], small_boost))[:, None]
    logit_abn = net(x)
    if w_nac > 0:
        # a separate pass: with one batch of near-identical pairs, batch
        # normalisation could tell the halves apart by their statistics
        logit_twin = net(torch.from_numpy(twin))
    prob = torch.sigmoid(logit_abn)
    dice = 1 - (2 * (prob * y).sum() + 1) / (prob.sum() + y.sum() + 1)
    bce = F.binary_cross_entropy_with_logits(logit_abn, y, weight=pixel_weight, pos_weight=torch.tensor(5.0))
    loss = dice + bce
    if w_nac > 0:
        p_twin = torch.sigmoid(logit_twin)
        k = max(1, p_twin[0].numel() // 100)
        top = p_twin.flatten(1).topk(k, dim=1).values.mean(dim=1)
        outside = (1.0 - torch.from_numpy(dilate(mask))[:, None]) * paired[:, None, None, None]
        consistency = (((prob - p_twin) ** 2) * outside).sum() / outside.sum().clamp(min=1)
        loss = loss + w_nac * ((top * paired).sum() / paired.sum().clamp(min=1) + consistency)
    with torch.no_grad():
        on = y > 0.5
        terms = [float(dice), float(bce), float(top.mean()) if w_nac > 0 else 0.0,
                 float(consistency) if w_nac > 0 else 0.0,
                 float(prob[on].mean()) if on.any() else 0.0, float(prob[~on].mean())]
    return loss, terms
