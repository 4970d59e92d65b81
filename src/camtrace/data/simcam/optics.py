"""The lens: lateral chromatic aberration, point-spread blur and vignetting."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from camtrace.data.simcam.preset import Optics

DISK_SUPERSAMPLE = 8  # sub-pixel grid for the anti-aliased disk kernel


def apply_optics(radiance: np.ndarray, optics: Optics) -> np.ndarray:
    """Radiance (H, W, 3) float32 -> the image on the sensor: CA, then PSF, then vignetting."""
    image = lateral_ca(radiance, optics.ca_red, optics.ca_blue)
    image = psf_blur(image, optics.psf, optics.blur)
    return image * vignetting(image.shape[:2], optics.vignetting)[..., None]


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
def vignetting(shape: tuple[int, int], strength: float) -> np.ndarray:
    """Relative illumination ``1 - strength * r^2``, r = distance from centre / half-diagonal."""
    h, w = shape
    y = (np.arange(h, dtype=np.float32) - (h - 1) / 2)[:, None]
    x = (np.arange(w, dtype=np.float32) - (w - 1) / 2)[None, :]
    r2 = (x**2 + y**2) / (((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2)
    return 1.0 - strength * r2
