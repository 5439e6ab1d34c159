"""Applicability: how far a job's input is from what its model was trained and validated on.

The score is computed on what the pack's ``preprocess`` returned, the array the network
sees, so it needs nothing from the ONNX graph. Each image (slice) of the pack's input
tensor is described by a few numbers (:data:`FEATURES`): intensity quantiles and the mean
and spread, the share of pixels at the darkest and the brightest value, the gradient and
the noise relative to the contrast, and the slope of the radial power spectrum. A job's
descriptor is the mean over its slices. The score is the Mahalanobis distance of that
descriptor to the calibration phantoms' descriptors, each feature centred on its median
and scaled by its robust spread, with a Ledoit-Wolf shrunk covariance (few calibration
series, a dozen features), divided by the square root of the number of features (a
typical in-domain input scores about 1). The calibration (``ainode models calibrate
NAME``, :mod:`models.training.applicability`) writes the statistics and the threshold
into the ``applicability`` block of the weights' ``model.json``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "FEATURES", "METHOD", "ApplicabilityCheck", "Verdict", "describe", "describe_inputs", "fit_statistics",
    "shrunk_covariance", "threshold_for",
]

METHOD = "input-descriptor-mahalanobis-v1"
"""The name of this method, written into ``model.json`` (a block of another method is refused)."""

FEATURES: tuple[str, ...] = (
    "q01", "q10", "q50", "q90", "q99", "mean", "std", "at_min", "at_max", "gradient", "noise", "spectrum_slope",
)
"""The numbers that describe one image, in this order."""

_MAX_EDGE = 256
"""Images are subsampled to at most this many pixels a side before they are described."""


def describe(image: np.ndarray) -> np.ndarray:
    """The :data:`FEATURES` of one 2D image (float64)."""
    image = np.asarray(image, dtype=np.float64)
    step = max(1, int(np.ceil(max(image.shape) / _MAX_EDGE)))
    x = image[::step, ::step]
    q01, q10, q50, q90, q99 = np.quantile(x, (0.01, 0.10, 0.50, 0.90, 0.99))
    lo, hi = float(x.min()), float(x.max())
    span = hi - lo
    tol = 1e-6 * max(span, 1e-12)
    contrast = max(q99 - q01, 1e-6)
    gradient = (np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean()) / contrast
    laplacian = x[1:-1, 1:-1] * 4 - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    noise = float(np.median(np.abs(laplacian))) / contrast
    return np.array([
        q01, q10, q50, q90, q99, x.mean(), x.std(),
        float(np.mean(x <= lo + tol)), float(np.mean(x >= hi - tol)) if span > 0 else 1.0,
        gradient, noise, _spectrum_slope(x),
    ], dtype=np.float64)


def _spectrum_slope(x: np.ndarray) -> float:
    """Slope of log power against log radial frequency between 0.04 and 0.4 cycles per pixel."""
    h, w = x.shape
    if min(h, w) < 16:
        return 0.0
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2((x - x.mean()) * window)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    radius = np.hypot(fy, fx)
    bins = np.geomspace(0.04, 0.4, 13)
    idx = np.digitize(radius.ravel(), bins)
    flat = power.ravel()
    centres, levels = [], []
    for b in range(1, len(bins)):
        sel = flat[idx == b]
        if sel.size:
            centres.append(np.sqrt(bins[b - 1] * bins[b]))
            levels.append(np.log(sel.mean() + 1e-20))
    if len(centres) < 3:
        return 0.0
    return float(np.polyfit(np.log(centres), levels, 1)[0])


def describe_inputs(inputs: Mapping[str, np.ndarray], name: str | None = None, channel: int = 0) -> np.ndarray:
    """A job's descriptor: the mean over its images of :func:`describe`, on input ``name`` (default the first)."""
    array = np.asarray(inputs[name] if name else next(iter(inputs.values())))
    if array.ndim == 3:
        array = array[:, None]
    images = array[:, min(channel, array.shape[1] - 1)]
    images = images.reshape((-1,) + images.shape[-2:])
    return np.mean([describe(image) for image in images], axis=0)


def shrunk_covariance(z: np.ndarray) -> np.ndarray:
    """The Ledoit-Wolf shrunk covariance of the rows of ``z`` (towards a scaled identity)."""
    n, k = z.shape
    centred = z - z.mean(axis=0)
    sample = centred.T @ centred / n
    target = np.trace(sample) / k
    d2 = float(np.sum((sample - target * np.eye(k)) ** 2))
    b2 = sum(float(np.sum((np.outer(row, row) - sample) ** 2)) for row in centred) / n ** 2
    shrink = 1.0 if d2 == 0 else min(1.0, b2 / d2)
    return shrink * target * np.eye(k) + (1 - shrink) * sample


def fit_statistics(descriptors: np.ndarray) -> dict[str, list]:
    """Centre, scale and precision (inverse shrunk covariance) of calibration ``descriptors`` (rows)."""
    descriptors = np.asarray(descriptors, dtype=np.float64)
    centre = np.median(descriptors, axis=0)
    mad = 1.4826 * np.median(np.abs(descriptors - centre), axis=0)
    floor = 1e-3 * np.maximum(np.abs(centre), 1e-3)
    scale = np.maximum(np.maximum(mad, 0.5 * descriptors.std(axis=0)), floor)
    z = (descriptors - centre) / scale
    precision = np.linalg.pinv(shrunk_covariance(z))
    return {"centre": centre.tolist(), "scale": scale.tolist(), "precision": precision.tolist()}


@dataclass(frozen=True)
class Verdict:
    """One job's applicability: its score, the model's threshold, and whether the input is outside."""

    score: float
    threshold: float

    @property
    def out_of_domain(self) -> bool:
        """Whether the score exceeds the threshold."""
        return self.score > self.threshold

    def sentence(self) -> str:
        """What a radiologist reads: the score against the threshold."""
        return f"applicability score {self.score:.2f} (threshold {self.threshold:.2f})"


@dataclass(frozen=True)
class ApplicabilityCheck:
    """The ``applicability`` block of a ``model.json``: scores a job's preprocessed input."""

    centre: np.ndarray
    scale: np.ndarray
    precision: np.ndarray
    threshold: float
    input: str | None = None
    channel: int = 0

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> "ApplicabilityCheck | None":
        """The check of a ``model.json`` (``None`` when it has no block of this :data:`METHOD`)."""
        block = meta.get("applicability")
        if not isinstance(block, Mapping) or block.get("method") != METHOD:
            return None
        stats = block["statistics"]
        return cls(np.asarray(stats["centre"], float), np.asarray(stats["scale"], float),
                   np.asarray(stats["precision"], float), float(block["threshold"]),
                   block.get("input"), int(block.get("channel", 0)))

    def distance(self, descriptor: np.ndarray) -> float:
        """The score of one descriptor (see the module's docstring)."""
        z = (np.asarray(descriptor, float) - self.centre) / self.scale
        d2 = float(z @ self.precision @ z)
        return float(np.sqrt(max(d2, 0.0) / len(z)))

    def score(self, inputs: Mapping[str, np.ndarray]) -> float:
        """The score of a job's preprocessed ``inputs``."""
        return self.distance(describe_inputs(inputs, self.input, self.channel))

    def verdict(self, inputs: Mapping[str, np.ndarray]) -> Verdict:
        """The :class:`Verdict` on a job's preprocessed ``inputs``."""
        return Verdict(self.score(inputs), self.threshold)


def threshold_for(scores: Sequence[float], quantile: float = 0.99) -> float:
    """The ``quantile`` of in-domain validation ``scores``: about 1 % of them exceed it."""
    return float(np.quantile(np.asarray(scores, float), quantile))

