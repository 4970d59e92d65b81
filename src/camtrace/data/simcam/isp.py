"""The in-camera processing: raw noise reduction, white balance, demosaicing, colour
matrix, tone, sharpening.

Order as in dcraw and most ISPs: noise reduction on the raw colour planes (tuned to the
shot's ISO), white balance on the mosaic (demosaicers that interpolate colour differences
assume balanced channels), demosaicing, 3x3 colour matrix, tone curve, then sharpening /
denoising on the encoded image.
"""

from __future__ import annotations

import functools

import colour
import colour_demosaicing
import cv2
import numpy as np

from camtrace.data.simcam.preset import Isp
from camtrace.data.simcam.sensor import crosstalk_matrix

RESAMPLING = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}
LUT_SIZE = 1 << 16  # the tone curve is tabulated at 16-bit precision
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)  # Rec. 709 luminance of linear sRGB
COLOUR_DEMOSAICING = {
    "bilinear": colour_demosaicing.demosaicing_CFA_Bayer_bilinear,
    "malvar2004": colour_demosaicing.demosaicing_CFA_Bayer_Malvar2004,
    "menon2007": colour_demosaicing.demosaicing_CFA_Bayer_Menon2007,
}


def raw_denoise(raw: np.ndarray, range_sigma: float) -> np.ndarray:
    """Edge-preserving noise reduction on the mosaic, one CFA phase plane at a time (each
    holds one colour, so colours never mix): a bilateral filter whose range sigma the ISP
    sets from the shot's expected noise, as raw NR is tuned per ISO. 0 = off."""
    if range_sigma <= 0:
        return raw
    out = raw.copy()
    for dy in range(2):
        for dx in range(2):
            plane = np.ascontiguousarray(raw[dy::2, dx::2])
            out[dy::2, dx::2] = cv2.bilateralFilter(plane, 5, range_sigma, 1.0)
    return out


def demosaic(raw: np.ndarray, cfa: str, algorithm: str) -> np.ndarray:
    """Raw (H, W) in [0, 1] -> RGB (H, W, 3) float32.

    colour-demosaicing gives bilinear, Malvar 2004 and Menon 2007; OpenCV gives VNG (8-bit
    only: fed a square-root companded raw, as cameras compress raw data) and edge-aware
    EA (16-bit). OpenCV's ``COLOR_Bayer<pattern>2RGB`` names the 2x2 tile from the top left.
    """
    if algorithm in COLOUR_DEMOSAICING:
        return COLOUR_DEMOSAICING[algorithm](raw, cfa).astype(np.float32)
    code = getattr(cv2, f"COLOR_Bayer{cfa}2RGB_{algorithm.upper()}")
    if algorithm == "vng":
        companded = np.round(np.sqrt(np.clip(raw, 0, 1)) * 255).astype(np.uint8)
        return (cv2.cvtColor(companded, code).astype(np.float32) / 255) ** 2
    linear16 = np.round(np.clip(raw, 0, 1) * 65535).astype(np.uint16)
    return cv2.cvtColor(linear16, code).astype(np.float32) / 65535


def white_balance_gains(
    sensitivity: tuple[float, float, float], jitter: float, rng: np.random.Generator
) -> np.ndarray:
    """Gains that make grey grey again (``s_G / s_c``), with a per-shot AWB error on R and B."""
    s = np.asarray(sensitivity, np.float32)
    error = np.exp(jitter * rng.standard_normal(3)).astype(np.float32)
    error[1] = 1.0
    return s[1] / s * error


def colour_matrix(crosstalk: float, saturation: float) -> np.ndarray:
    """Camera RGB -> sRGB: undo the filter crosstalk, then the model's saturation rendering."""
    grey = np.outer(np.ones(3, np.float32), LUMA)
    rendering = saturation * np.eye(3, dtype=np.float32) + (1 - saturation) * grey
    return (rendering @ np.linalg.inv(crosstalk_matrix(crosstalk))).astype(np.float32)


def apply_matrix(rgb: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return cv2.transform(rgb, matrix)


@functools.lru_cache(maxsize=32)
def tone_lut(tone_gamma: float, contrast: float) -> np.ndarray:
    """The tone curve on [0, 1]: sRGB encoding, a power ``1 / tone_gamma``, then an S-curve
    ``y + contrast (3y^2 - 2y^3 - y)`` (contrast < 0 flattens)."""
    y = colour.models.eotf_inverse_sRGB(np.linspace(0, 1, LUT_SIZE)) ** (1 / tone_gamma)
    y = y + contrast * (y * y * (3 - 2 * y) - y)
    return np.clip(y, 0, 1).astype(np.float32)


def apply_tone(rgb: np.ndarray, lut: np.ndarray) -> np.ndarray:
    index = np.clip(rgb * (LUT_SIZE - 1) + 0.5, 0, LUT_SIZE - 1).astype(np.uint16)
    return lut[index]


def finish(encoded: np.ndarray, isp: Isp) -> np.ndarray:
    """Denoise and sharpen in YCbCr: bilateral luma denoising, unsharp mask on luma,
    Gaussian chroma smoothing (the usual split: detail in luma, noise hidden in chroma)."""
    ycc = cv2.cvtColor(encoded, cv2.COLOR_RGB2YCrCb)
    y = np.ascontiguousarray(ycc[..., 0])
    if isp.luma_denoise > 0:
        y = cv2.bilateralFilter(y, 5, isp.luma_denoise, 1.0)
    if isp.sharpen_amount > 0:
        y = y + isp.sharpen_amount * (y - cv2.GaussianBlur(y, (0, 0), isp.sharpen_radius))
    ycc[..., 0] = y
    if isp.chroma_denoise > 0:
        ycc[..., 1:] = cv2.GaussianBlur(ycc[..., 1:], (0, 0), isp.chroma_denoise)
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def to_uint8(encoded: np.ndarray) -> np.ndarray:
    return np.clip(encoded * 255 + 0.5, 0, 255).astype(np.uint8)
