"""Head CT family B, scanner: geometry, calibration, reconstruction kernel, noise and artefacts.

Its own model of a CT acquisition (independent of family A's noise and blur):

* geometry: field of view 190-250 mm on a 512 matrix, gantry tilt -6..+22 degrees (the
  image planes are tilted about the left-right axis; written as Image Orientation
  (Patient) and Gantry/Detector Tilt);
* calibration: HU offset -8..+8 and a gain error of +-2.5 % around water;
* reconstruction kernel: a modulation transfer function ``(1 + boost f^2) exp(-(f/fc)^2)``
  applied in the Fourier domain (soft, standard or edge-enhancing);
* noise: white noise shaped by a filtered-back-projection noise power spectrum
  (``f exp(-(f/fn)^2)`` times the kernel's MTF squared: the ramp leaves little power at
  the lowest frequencies), 3-11 HU, higher in the skull base slices (fewer photons
  through more bone); drawn in the Fourier domain and inverted with the image;
* beam hardening: cupping inside the skull and a dark band between dense skull-base
  bones (the interpetrous "Hounsfield bar");
* streaks: thin alternating bright / dark lines through dense bone in a few slices;
* the reconstruction circle, outside which the value is -1024 or a padding of -2000.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import fft

__all__ = ["ScannerB", "acquire"]

KERNELS = {"soft": (0.32, 0.0), "standard": (0.42, 0.6), "sharp": (0.55, 2.2)}
"""Kernel name -> (cut-off fc in cycles/pixel, mid-frequency boost)."""


@dataclass(frozen=True)
class ScannerB:
    """One family-B acquisition."""

    fov_mm: float
    tilt_deg: float
    kernel: str
    noise_hu: float
    noise_fn: float
    hu_offset: float
    hu_gain: float
    cupping: float
    bar_hu: float
    streaks: int
    streak_hu: float
    outside: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> "ScannerB":
        """Draw a scanner setting."""
        u = rng.uniform
        return cls(
            fov_mm=float(u(190, 250)), tilt_deg=float(u(-6, 22)),
            kernel=str(rng.choice(list(KERNELS), p=[0.35, 0.45, 0.2])), noise_hu=float(u(3, 11)),
            noise_fn=float(u(0.18, 0.35)), hu_offset=float(u(-8, 8)), hu_gain=float(u(0.975, 1.025)),
            cupping=float(u(0, 8)), bar_hu=float(u(8, 35)), streaks=int(rng.integers(0, 5)),
            streak_hu=float(u(15, 55)), outside=float(rng.choice([-1024.0, -2000.0])),
        )

    def as_dict(self) -> dict:
        """JSON-able fields."""
        return asdict(self)


def acquire(
    hu: np.ndarray, base_weight: np.ndarray, scanner: ScannerB, rng: np.random.Generator,
) -> np.ndarray:
    """Turn true HU ``(n, size, size)`` into the reconstructed image (int16).

    ``base_weight`` ``(n,)`` in 0..1 says how much skull base each slice holds (more noise
    and the interpetrous band there).
    """
    n, size, _ = hu.shape
    out = np.empty(hu.shape, dtype=np.int16)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2.0
    circle = np.hypot(yy, xx) > size / 2.0
    mtf, nps = _spectra(size, scanner)
    unit = 1.0 / float(fft.irfft2(_white(rng, nps.shape) * nps, s=(size, size)).std() + 1e-9)
    streak_slices = set(rng.choice(n, size=min(scanner.streaks, n), replace=False).tolist()) if scanner.streaks else set()
    for i in range(n):
        img = hu[i].astype(np.float32) * scanner.hu_gain + scanner.hu_offset
        head = hu[i] > -300
        if head.sum() > 100:
            cy, cx = yy[head].mean(), xx[head].mean()
            radius = np.sqrt(head.sum() / np.pi)
            r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / radius ** 2
            img -= scanner.cupping * np.clip(1 - r2, 0, 1) * (hu[i] < 200)
            if base_weight[i] > 0:
                img += _bar(hu[i], yy, xx, cy, cx, radius) * scanner.bar_hu * base_weight[i]
            if i in streak_slices:
                img += _streaks(hu[i], yy, xx, rng, scanner.streak_hu)
        # Kernel and noise in one inverse transform: the noise is drawn in the Fourier domain.
        sigma = scanner.noise_hu * (1.0 + 0.6 * base_weight[i]) * unit
        spectrum = fft.rfft2(img) * mtf + _white(rng, nps.shape) * (nps * sigma)
        img = fft.irfft2(spectrum, s=img.shape)
        img[circle] = scanner.outside
        out[i] = np.clip(np.rint(img), -2048, 4000).astype(np.int16)
    return out


def _white(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Complex white noise on an ``rfft2`` grid (float32)."""
    return (rng.standard_normal(shape, dtype=np.float32) + 1j * rng.standard_normal(shape, dtype=np.float32)).astype(
        np.complex64)


def _spectra(size: int, scanner: ScannerB) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's MTF and the noise amplitude spectrum on the ``rfft2`` grid."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.hypot(fy, fx)
    fc, boost = KERNELS[scanner.kernel]
    mtf = (1 + boost * (f / fc) ** 2) * np.exp(-(f / fc) ** 2)
    nps = f * np.exp(-(f / scanner.noise_fn) ** 2) * mtf ** 2
    return mtf.astype(np.float32), np.sqrt(nps).astype(np.float32)


def _bar(hu: np.ndarray, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, radius: float) -> np.ndarray:
    """A dark band (0..-1) between the dense bone left and right of the middle of the slice."""
    dense = (hu > 900) & ((yy - cy) ** 2 + (xx - cx) ** 2 < (0.6 * radius) ** 2)
    left, right = dense & (xx < cx), dense & (xx >= cx)
    if left.sum() < 30 or right.sum() < 30:
        return np.zeros_like(xx)
    p0 = np.array([yy[left].mean(), xx[left].mean()])
    p1 = np.array([yy[right].mean(), xx[right].mean()])
    axis = p1 - p0
    length = np.linalg.norm(axis) + 1e-6
    along = ((yy - p0[0]) * axis[0] + (xx - p0[1]) * axis[1]) / length ** 2
    dist = np.abs((yy - p0[0]) * axis[1] - (xx - p0[1]) * axis[0]) / length
    return -np.exp(-(dist / 6.0) ** 2) * ((along > 0) & (along < 1)) * (hu > -300) * (hu < 200)


def _streaks(hu: np.ndarray, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator, amp: float) -> np.ndarray:
    """Two to five thin lines of alternating sign through dense bone pixels."""
    bone = np.argwhere(hu > 1000)
    out = np.zeros_like(xx)
    if bone.size == 0:
        return out
    for k in range(int(rng.integers(2, 6))):
        py, px = bone[rng.integers(len(bone))] - (hu.shape[0] - 1) / 2.0
        phi = rng.uniform(0, np.pi)
        dist = (yy - py) * np.cos(phi) - (xx - px) * np.sin(phi)
        out += (1 if k % 2 else -1) * amp * rng.uniform(0.5, 1.0) * np.exp(-(dist / 0.8) ** 2)
    return out
