"""Applicability: how far a job's input is from what its model was trained and validated on.

The score is computed on what the pack's ``preprocess`` returned, the array the network
sees, so it needs nothing from the ONNX graph. Each image (slice) of the pack's input
tensor is described by :data:`FEATURES`: intensity quantiles, mean and spread; the gradient
and the noise relative to the contrast; the slope of the radial power spectrum and the share
of the power in five frequency bands; how heavy the tail of the Laplacian is; the entropy of
the histogram; and the layout, the mean of each cell of a 4 x 4 grid (a turned or cropped
image moves it). Each feature is centred on the calibration slices' median and scaled by the
larger of its robust spread (MAD) and its standard deviation. A slice's score is the mean
distance (root mean square over the features) to its :data:`NEIGHBOURS` nearest calibration
slices: a nearest-neighbour distance, because the slices of a volume are of many kinds (a
head's vertex is not its skull base) and a series may cover only part of it; an in-domain
slice scores about 1. A job's score is the median of its slices' scores. The calibration
(``ainode models calibrate NAME``, :mod:`models.training.applicability`) writes the
statistics, the reference slices and the threshold into the ``applicability`` block of the
weights' ``model.json``.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "FEATURES", "METHOD", "NEIGHBOURS", "ApplicabilityCheck", "Verdict", "describe", "describe_slices",
    "fit_statistics", "stable_features", "tail_threshold", "threshold_for",
]

METHOD = "input-descriptor-knn-v3"
NEIGHBOURS = 5
"""How many nearest calibration slices a slice's score is the mean distance to."""
_MAX_REFERENCE = 1000
"""The name of this method, written into ``model.json`` (a block of another method is refused)."""

_GRID = 4
FEATURES: tuple[str, ...] = (
    "q01", "q10", "q50", "q90", "q99", "mean", "std", "gradient", "noise", "spectrum_slope",
    *(f"band_{i}" for i in range(5)), "laplacian_tail", "entropy",
    *(f"layout_{r}{c}" for r in range(_GRID) for c in range(_GRID)),
)
"""The numbers that describe one image, in this order."""

_MAX_EDGE = 256
"""Images are subsampled to at most this many pixels a side before they are described."""


def describe(image: np.ndarray) -> np.ndarray:
    """The :data:`FEATURES` of one 2D image (float64)."""
    image = np.asarray(image, dtype=np.float64)
    step = max(1, int(np.ceil(max(image.shape) / _MAX_EDGE)))
    x = image[::step, ::step]
    quantiles = np.quantile(x, (0.01, 0.10, 0.50, 0.90, 0.99))
    contrast = max(quantiles[4] - quantiles[0], 1e-6)
    gradient = (np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean()) / contrast
    laplacian = np.abs(x[1:-1, 1:-1] * 4 - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:])
    noise = float(np.median(laplacian)) / contrast
    tail = np.log(laplacian.mean() / (np.median(laplacian) + 1e-9) + 1e-9)
    counts, _ = np.histogram(x, bins=64)
    p = counts[counts > 0] / counts.sum()
    h, w = x.shape
    layout = [x[r * h // _GRID:(r + 1) * h // _GRID, c * w // _GRID:(c + 1) * w // _GRID].mean()
              for r in range(_GRID) for c in range(_GRID)]
    return np.array([*quantiles, x.mean(), x.std(), gradient, noise, *_spectrum(x), tail, -(p * np.log(p)).sum(),
                     *layout], dtype=np.float64)


def _spectrum(x: np.ndarray) -> list[float]:
    """Slope of log power against log radial frequency (0.04 to 0.4 cycles per pixel), then the log
    share of the power in five bands from 0.01 to 0.5 cycles per pixel."""
    h, w = x.shape
    if min(h, w) < 16:
        return [0.0] * 6
    window = np.outer(np.hanning(h), np.hanning(w))
    power = (np.abs(np.fft.fft2((x - x.mean()) * window)) ** 2).ravel()
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    radius = np.hypot(fy, fx).ravel()
    bins = np.geomspace(0.04, 0.4, 13)
    idx = np.digitize(radius, bins)
    centres, levels = [], []
    for b in range(1, len(bins)):
        sel = power[idx == b]
        if sel.size:
            centres.append(np.sqrt(bins[b - 1] * bins[b]))
            levels.append(np.log(sel.mean() + 1e-20))
    slope = float(np.polyfit(np.log(centres), levels, 1)[0]) if len(centres) >= 3 else 0.0
    edges = (0.01, 0.03, 0.07, 0.15, 0.3, 0.5)
    total = power[radius > edges[0]].sum() + 1e-20
    bands = [float(np.log(power[(radius >= lo) & (radius < hi)].sum() / total + 1e-12))
             for lo, hi in zip(edges[:-1], edges[1:])]
    return [slope, *bands]


def describe_slices(inputs: Mapping[str, np.ndarray], name: str | None = None, channel: int = 0) -> np.ndarray:
    """The :func:`describe` of each image of input ``name`` (default the first), one row each."""
    array = np.asarray(inputs[name] if name else next(iter(inputs.values())))
    if array.ndim == 3:
        array = array[:, None]
    images = array[:, min(channel, array.shape[1] - 1)]
    images = images.reshape((-1,) + images.shape[-2:])
    return np.array([describe(image) for image in images])


def fit_statistics(slices: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Centre and scale of calibration ``slices`` (rows of descriptors) and their reference set:
    the scaled rows (at most 1 000, drawn with ``seed``), as base64 of float16."""
    slices = np.asarray(slices, dtype=np.float64)
    centre = np.median(slices, axis=0)
    mad = 1.4826 * np.median(np.abs(slices - centre), axis=0)
    floor = 1e-3 * np.maximum(np.abs(centre), 1e-3)
    scale = np.maximum(np.maximum(mad, slices.std(axis=0)), floor)
    z = (slices - centre) / scale
    if len(z) > _MAX_REFERENCE:
        z = z[np.sort(np.random.default_rng(seed).choice(len(z), _MAX_REFERENCE, replace=False))]
    reference = base64.b64encode(np.clip(z, -6e4, 6e4).astype("<f2").tobytes()).decode("ascii")
    return {"centre": centre.tolist(), "scale": scale.tolist(), "reference": reference, "reference_shape": list(z.shape)}


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
    reference: np.ndarray
    """The calibration slices, scaled (one row each)."""
    threshold: float
    input: str | None = None
    channel: int = 0
    keep: tuple[int, ...] | None = None
    """The indexes of the :data:`FEATURES` the statistics are of (``None``: all)."""

    @classmethod
    def from_statistics(cls, stats: Mapping[str, Any], threshold: float = 0.0, **options: Any) -> "ApplicabilityCheck":
        """The check of :func:`fit_statistics`' ``stats`` with ``threshold``."""
        reference = np.frombuffer(base64.b64decode(stats["reference"]), dtype="<f2").astype(np.float64)
        return cls(np.asarray(stats["centre"], float), np.asarray(stats["scale"], float),
                   reference.reshape(stats["reference_shape"]), float(threshold), **options)

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> "ApplicabilityCheck | None":
        """The check of a ``model.json`` (``None`` when it has no block of this :data:`METHOD`)."""
        block = meta.get("applicability")
        if not isinstance(block, Mapping) or block.get("method") != METHOD:
            return None
        keep = tuple(FEATURES.index(name) for name in block["features"]) if block.get("features") else None
        return cls.from_statistics(block["statistics"], block["threshold"], input=block.get("input"),
                                   channel=int(block.get("channel", 0)), keep=keep)

    def slice_scores(self, slices: np.ndarray) -> np.ndarray:
        """The score of each slice (rows of descriptors): its mean distance to its nearest calibration slices."""
        slices = np.atleast_2d(np.asarray(slices, float))
        if self.keep is not None:
            slices = slices[:, list(self.keep)]
        z = (slices - self.centre) / self.scale
        distances = np.sqrt(np.maximum(
            (z ** 2).sum(1)[:, None] - 2 * z @ self.reference.T + (self.reference ** 2).sum(1)[None, :], 0.0)
            / z.shape[1])
        nearest = np.sort(distances, axis=1)[:, :min(NEIGHBOURS, distances.shape[1])]
        return nearest.mean(axis=1)

    def distance(self, slices: np.ndarray) -> float:
        """The score of a job whose slices are described by ``slices``: the median of their scores."""
        return float(np.median(self.slice_scores(slices)))

    def describe(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The descriptors (one row per image) of preprocessed ``inputs`` that this check scores."""
        return describe_slices(inputs, self.input, self.channel)

    def score(self, inputs: Mapping[str, np.ndarray]) -> float:
        """The score of a job's preprocessed ``inputs``."""
        return self.distance(self.describe(inputs))

    def verdict(self, inputs: Mapping[str, np.ndarray]) -> Verdict:
        """The :class:`Verdict` on a job's preprocessed ``inputs``."""
        return Verdict(self.score(inputs), self.threshold)

    def verdict_of(self, descriptors: np.ndarray) -> Verdict:
        """The :class:`Verdict` on a job whose images are described by ``descriptors`` (rows of :meth:`describe`)."""
        return Verdict(self.distance(descriptors), self.threshold)


def stable_features(descriptors: np.ndarray, limit: float = 8.0, share: float = 0.98) -> list[int]:
    """The indexes of the features that stay within ``limit`` robust standard deviations (MAD) of
    their median on ``share`` of the in-domain ``descriptors`` (rows): a feature that the phantoms'
    own styles throw further (a head's position in a styled head CT moves the layout) would make
    every in-domain outlier of it look foreign, and is left out."""
    descriptors = np.asarray(descriptors, dtype=np.float64)
    centre = np.median(descriptors, axis=0)
    mad = 1.4826 * np.median(np.abs(descriptors - centre), axis=0)
    floor = 1e-3 * np.maximum(np.abs(centre), 1e-3)
    z = np.abs(descriptors - centre) / np.maximum(mad, floor)
    return [i for i in range(descriptors.shape[1]) if np.quantile(z[:, i], share) <= limit]


def threshold_for(scores: Sequence[float], quantile: float = 0.99) -> float:
    """The empirical ``quantile`` of in-domain validation ``scores``: about 1 % of them exceed it."""
    return float(np.quantile(np.asarray(scores, float), quantile))


TAIL = 0.2
"""The share of the validation scores, the highest, whose excesses model the tail (:func:`tail_threshold`)."""
CONFIDENCE = 0.9
"""The confidence with which :func:`tail_threshold` bounds the tail's mean excess from above."""


def tail_threshold(scores: Sequence[float], units: int, quantile: float = 0.99, tail: float = TAIL,
                   confidence: float = CONFIDENCE) -> float:
    """A threshold that about ``1 - quantile`` of in-domain inputs exceed, robust to few validation phantoms.

    The empirical 99th percentile of scores from a few dozen phantoms is about their maximum,
    and moves with one phantom more or less. Here the tail is modelled (peaks over threshold):
    above ``u``, the ``1 - tail`` quantile of ``scores``, the excesses are taken as exponential
    with mean ``beta``, so the ``quantile`` is ``u + beta * ln(tail / (1 - quantile))``; ``beta``
    is the upper ``confidence`` bound of the excesses' mean (chi-square with ``2 m`` degrees of
    freedom), where ``m`` counts them in ``units``, the independent phantoms (the parts of one
    volume scored as several jobs are not independent draws): the fewer phantoms, the wider
    the margin.
    """
    from scipy.stats import chi2

    scores = np.asarray(scores, float)
    u = float(np.quantile(scores, 1 - tail))
    excess = scores[scores > u] - u
    if excess.size == 0:
        return u
    m = max(2, int(round(excess.size * units / scores.size)))
    beta = float(excess.mean()) * 2 * m / float(chi2.ppf(1 - confidence, 2 * m))
    return u + beta * float(np.log(tail / (1 - quantile)))

