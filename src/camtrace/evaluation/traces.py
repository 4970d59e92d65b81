"""Camera-trace statistics of one photo, the yardsticks ``camtrace audit`` reports per model.

- :func:`cfa_trace_ratio`: the periodic trace demosaicing leaves in green (issue 11's
  definition, after Popescu & Farid 2005 and Kirchner 2010): interpolated samples are
  predictable from their neighbours, so the 4-neighbour Laplacian residual is weaker on the
  interpolated green quincunx lattice than on the sampled one.
- :func:`noise_sigma`: Immerkaer 1996, "Fast noise variance estimation", on 8-bit luma.
- :func:`border_seam_ratio`: how far the frame's outer lines break the image's line-to-line
  smoothness (a mirrored edge, as a distortion correction that samples beyond the frame
  leaves), against the interior.
- :func:`jpeg_quality_estimate`: the IJG quality whose scaled Annex K luma table is closest.
- :func:`residual_cooccurrence`: SPAM-style features (Pevny, Bas & Fridrich 2010; those of
  :mod:`camtrace.models.marra2017`), the statistics of the high-pass residual a camera's
  processing leaves, blind to scene colour.

All take uint8 pixels (H, W, 3), as every image crossing a module boundary.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
from scipy.ndimage import convolve

from camtrace.data.codec import ijg_tables
from camtrace.errors import CamtraceError
from camtrace.models.marra2017 import spam_features

# 4-neighbour Laplacian: the high-pass whose residual is ~0 where a sample is interpolated.
LAPLACIAN = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float64)
# Immerkaer 1996, Eq. (5): the difference of two Laplacians, blind to image structure to
# second order.
IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
BT601 = np.array([0.299, 0.587, 0.114])


class CfaTrace(NamedTuple):
    """Ratio larger/smaller of the green residual energies (1.0 = no trace), and the lattice
    with the larger energy: ``"even"`` ((y + x) even) or ``"odd"``."""

    ratio: float
    lattice: Literal["even", "odd"]


def _check_rgb(rgb: np.ndarray, what: str) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 3:
        raise CamtraceError(
            f"{what}: need a uint8 (H, W, 3) image of at least 3x3 pixels, got "
            f"{rgb.dtype} {rgb.shape}; load it with camtrace.load_rgb"
        )


def _interior(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``x * kernel`` on the pixels whose 3x3 neighbourhood lies inside the image."""
    return convolve(x, kernel, mode="nearest")[1:-1, 1:-1]


def cfa_trace_ratio(rgb: np.ndarray) -> CfaTrace:
    """Mean squared 4-neighbour Laplacian residual of green on each quincunx lattice
    ((y + x) even vs odd, over interior pixels); ratio larger/smaller (issue 11)."""
    _check_rgb(rgb, "cfa_trace_ratio")
    residual = _interior(rgb[:, :, 1].astype(np.float64), LAPLACIAN) ** 2
    y, x = np.indices(residual.shape)
    even = residual[(y + x) % 2 == 0].mean()  # interior (1, 1) has y + x even, as in the image
    odd = residual[(y + x) % 2 == 1].mean()
    lattice: Literal["even", "odd"] = "even" if even >= odd else "odd"
    high, low = max(even, odd), min(even, odd)
    if high == 0:
        return CfaTrace(1.0, lattice)
    return CfaTrace(float(high / low) if low > 0 else math.inf, lattice)


def noise_sigma(rgb: np.ndarray) -> float:
    """Immerkaer 1996, Eq. (9): sigma = sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * M| on BT.601
    luma in grey levels (0-255), over interior pixels."""
    _check_rgb(rgb, "noise_sigma")
    luma = rgb.astype(np.float64) @ BT601
    h, w = luma.shape
    total = np.abs(_interior(luma, IMMERKAER)).sum()
    return float(math.sqrt(math.pi / 2) * total / (6 * (w - 2) * (h - 2)))


BORDER_BAND = 16  # outer lines searched for a seam: a distortion correction's reach at 1 MP


def border_seam_ratio(rgb: np.ndarray, band: int = BORDER_BAND) -> float:
    """The largest, over the four edges, |second difference| of the luma line means (row
    means at top and bottom, column means at left and right) within ``band`` lines of the
    edge, over the median |second difference| of the interior lines (1 = no seam)."""
    _check_rgb(rgb, "border_seam_ratio")
    luma = rgb.astype(np.float64) @ BT601
    if min(luma.shape) < 4 * band:
        raise CamtraceError(
            f"border_seam_ratio: need at least {4 * band} px a side, got {luma.shape}"
        )
    worst = 0.0
    for means in (luma.mean(axis=1), luma.mean(axis=0)):
        d2 = np.abs(np.diff(means, 2))  # d2[i] is centred on line i + 1
        interior = float(np.median(d2[band:-band]))
        edges = max(d2[: band - 1].max(), d2[-(band - 1) :].max())
        worst = max(worst, float(edges) / max(interior, 1e-9))
    return worst


def jpeg_quality_estimate(luma_table: tuple[int, ...] | list[int]) -> int:
    """The IJG quality (1-100) whose scaled Annex K luma table (libjpeg's, natural order) is
    closest in L1 distance to ``luma_table``; exact for libjpeg's own files."""
    table = np.asarray(luma_table, np.int64)
    if table.shape != (64,):
        raise CamtraceError(
            f"jpeg_quality_estimate: need the 64 luma quantisation steps, got {table.size}; "
            "pass Jpeg.from_file(path).qtables[0]"
        )
    distance = {q: np.abs(np.asarray(ijg_tables(q)[0]) - table).sum() for q in range(1, 101)}
    return min(distance, key=lambda q: (distance[q], -q))


def residual_cooccurrence(rgb: np.ndarray) -> np.ndarray:
    """The 400 SPAM-style residual co-occurrences of one photo (:func:`spam_features`, the
    features of Marra 2017's detector): a linear classifier on them measures how far the
    camera traces alone separate the models."""
    _check_rgb(rgb, "residual_cooccurrence")
    return spam_features(rgb[None])[0]
