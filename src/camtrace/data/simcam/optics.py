"""The lens and the filter stack: lateral chromatic aberration, point-spread blur,
vignetting, and the optical low-pass (anti-aliasing) filter in front of the sensor."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from camtrace.data.simcam.preset import Optics

DISK_SUPERSAMPLE = 8  # sub-pixel grid for the anti-aliased disk kernel


INTERPOLATION_SUPPORT = 4  # px: the widest correction kernel (Lanczos-4) reaches this far


def apply_optics(radiance: np.ndarray, optics: Optics, radius: float | None = None) -> np.ndarray:
    """Radiance (H, W, 3) float32 -> the image on the sensor: CA, PSF, vignetting, OLPF.

    ``radius``: the half-diagonal, in px, that distortion and vignetting are normalised by
    (default: the frame's own; the output frame's when the sensor is larger than it)."""
    image = radial_warp(radiance, -optics.distortion, radius=radius)
    image = lateral_ca(image, optics.ca_red, optics.ca_blue)
    image = psf_blur(image, optics.psf, optics.blur)
    image = image * vignetting(image.shape[:2], optics.vignetting, radius)[..., None]
    return olpf(image, optics.olpf)


def sensor_border(distortion: float, size: tuple[int, int]) -> int:
    """Pixels the sensor extends beyond the output frame on each side, so the in-camera
    distortion correction of a ``size`` output samples real pixels, never a mirrored edge.

    The correction reads the output pixel at normalised radius r from ``r (1 + k1 r^2)``:
    at the frame's edge ``k1`` times the half-width beyond it, plus the kernel's reach.
    Even, so cropping keeps the CFA's phase. 0 without distortion (nothing is resampled)."""
    if distortion == 0:
        return 0
    reach = math.ceil(distortion * max(size) / 2) + INTERPOLATION_SUPPORT
    return reach + reach % 2


def lateral_ca(image: np.ndarray, ca_red: float, ca_blue: float) -> np.ndarray:
    """Lateral chromatic aberration: R and B magnified by ``1 + ca`` about the centre."""
    out = image.copy()
    for channel, ca in ((0, ca_red), (2, ca_blue)):
        if ca != 0:
            out[..., channel] = _magnify(image[..., channel], 1.0 + ca)
    return out


def _magnify(plane: np.ndarray, scale: float) -> np.ndarray:
    h, w = plane.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    m = np.array([[scale, 0, (1 - scale) * cx], [0, scale, (1 - scale) * cy]], np.float32)
    return cv2.warpAffine(plane, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def radial_warp(
    image: np.ndarray,
    k1: float,
    interpolation: int = cv2.INTER_LINEAR,
    radius: float | None = None,
) -> np.ndarray:
    """Resample ``image`` so the pixel at normalised radius r (1 = ``radius``, default the
    half-diagonal) shows the input at ``r (1 + k1 r^2)``: with k1 = -distortion the lens's
    barrel distortion, with k1 = +distortion the ISP's correction of it (to first order its
    inverse). Samples beyond the frame mirror it: give the frame a :func:`sensor_border`."""
    if k1 == 0:
        return image
    map_x, map_y = _radial_maps(image.shape[:2], k1, radius)
    return cv2.remap(image, map_x, map_y, interpolation, borderMode=cv2.BORDER_REFLECT)


def _half_diagonal(shape: tuple[int, int]) -> float:
    return math.hypot((shape[0] - 1) / 2, (shape[1] - 1) / 2)


@functools.lru_cache(maxsize=16)
def _radial_maps(
    shape: tuple[int, int], k1: float, radius: float | None
) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    y, x = np.indices(shape, dtype=np.float32)
    dx, dy = x - cx, y - cy
    scale = 1 + k1 * (dx**2 + dy**2) / (radius or _half_diagonal(shape)) ** 2
    return (cx + dx * scale).astype(np.float32), (cy + dy * scale).astype(np.float32)


def psf_blur(image: np.ndarray, psf: str, size: float) -> np.ndarray:
    """Convolve with a Gaussian (sigma = ``size``) or a defocus disk (radius = ``size``) PSF."""
    if size <= 0:
        return image
    if psf == "gaussian":
        return cv2.GaussianBlur(image, (0, 0), size, borderType=cv2.BORDER_REFLECT)
    return cv2.filter2D(image, -1, disk_kernel(size), borderType=cv2.BORDER_REFLECT)


@functools.lru_cache(maxsize=16)
def disk_kernel(radius: float) -> np.ndarray:
    """Normalised disk PSF whose edge pixels hold their covered area (anti-aliased).

    Written here because OpenCV and scikit-image only give integer-radius binary disks.
    """
    half = int(np.ceil(radius))
    n = (2 * half + 1) * DISK_SUPERSAMPLE
    t = (np.arange(n) + 0.5) / DISK_SUPERSAMPLE - (half + 0.5)
    inside = (t[:, None] ** 2 + t[None, :] ** 2 <= radius**2).astype(np.float32)
    k = inside.reshape(2 * half + 1, DISK_SUPERSAMPLE, 2 * half + 1, DISK_SUPERSAMPLE).sum((1, 3))
    return k / k.sum()


@functools.lru_cache(maxsize=16)
def vignetting(shape: tuple[int, int], strength: float, radius: float | None = None) -> np.ndarray:
    """Relative illumination ``max(1 - strength * r^2, 0)``, r = distance from centre /
    ``radius`` (default: the half-diagonal)."""
    h, w = shape
    y = (np.arange(h, dtype=np.float32) - (h - 1) / 2)[:, None]
    x = (np.arange(w, dtype=np.float32) - (w - 1) / 2)[None, :]
    r2 = (x**2 + y**2) / (radius or _half_diagonal(shape)) ** 2
    return np.maximum(1.0 - strength * r2, 0.0)


def olpf(image: np.ndarray, split: float) -> np.ndarray:
    """A birefringent optical low-pass filter: two crystal plates split each ray into four
    spots ``split`` px apart horizontally and vertically, so detail near the sampling
    frequency (what the CFA would alias and demosaicing would mis-interpolate) is averaged
    away before the sensor. ``split = 1`` is the classic one-pixel filter; 0 = none."""
    if split <= 0:
        return image
    kernel = _two_spot(split)
    return cv2.sepFilter2D(image, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT)


@functools.lru_cache(maxsize=16)
def _two_spot(split: float) -> np.ndarray:
    """1-D kernel of two half-weight spots ``split`` px apart, linearly interpolated onto
    the pixel grid (written here: no library kernel places a sub-pixel delta pair)."""
    taps = np.zeros(int(np.ceil(split)) + 1, np.float32)
    whole, frac = int(split), split - int(split)
    taps[0] += 0.5
    taps[whole] += 0.5 * (1 - frac)
    if frac > 0:
        taps[whole + 1] += 0.5 * frac
    return taps
