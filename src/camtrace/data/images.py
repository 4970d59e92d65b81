"""Robust image reading: every photo enters camtrace as (H, W, 3) uint8 RGB.

``load_rgb`` turns every way a file can be wrong (missing, not an image, truncated,
decompression bomb, too small) into a one-line :class:`CamtraceError` naming the file and
the fix, so a dataset build can skip the file and go on. Writing is the codec's
(:func:`camtrace.data.codec.save_image`).
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from camtrace.errors import CamtraceError

# What Pillow's decoders raise on corrupt, truncated or hostile files (UnidentifiedImageError
# and "image file is truncated" are OSErrors; Python-level plugins add the others).
DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    EOFError,
    IndexError,
    KeyError,
    struct.error,
    zlib.error,
)


def load_rgb(path: str | Path, min_size: int = 0, max_pixels: int = 100_000_000) -> np.ndarray:
    """Read ``path`` as (H, W, 3) uint8 RGB, upright per its EXIF orientation.

    Grey, palette, alpha, CMYK, YCbCr and 16/32-bit images are converted (alpha dropped,
    high bit depths rescaled, see :func:`to_uint8`). Pillow's own bomb warning is silenced
    because ``max_pixels`` is checked on the header, before any pixel is decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise CamtraceError(f"{path}: no such file; check the path or the manifest root")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _open(path) as im:
            _check_size(path, im.size, min_size, max_pixels)
            im = _decode(path, im)
    return _to_rgb(path, im)


def _open(path: Path) -> Image.Image:
    """Open the header only; unreadable files and oversized headers become CamtraceError."""
    try:
        return Image.open(path)
    except Image.DecompressionBombError as e:
        raise CamtraceError(f"{path}: decompression bomb ({e}); remove the file") from None
    except DECODE_ERRORS as e:
        raise CamtraceError(
            f"{path}: not a readable image ({type(e).__name__}: {_one_line(e)}); "
            "re-export it as PNG/JPEG or remove it"
        ) from None


def _check_size(path: Path, size: tuple[int, int], min_size: int, max_pixels: int) -> None:
    """Refuse bombs (more than ``max_pixels``) and images smaller than one patch."""
    w, h = size
    if w * h > max_pixels:
        raise CamtraceError(
            f"{path}: image is {w}x{h} = {w * h} pixels, more than max_pixels={max_pixels} "
            "(possible decompression bomb); remove it or raise max_pixels"
        )
    if min(w, h) < min_size:
        raise CamtraceError(
            f"{path}: image is {w}x{h}, smaller than a {min_size}x{min_size} patch; "
            "remove it or use a smaller patch size"
        )


def _decode(path: Path, im: Image.Image) -> Image.Image:
    """Force a full decode (truncation shows here) and apply the EXIF orientation."""
    try:
        im.load()
        return ImageOps.exif_transpose(im)
    except DECODE_ERRORS as e:
        raise CamtraceError(
            f"{path}: corrupt or truncated image ({type(e).__name__}: {_one_line(e)}); "
            "re-download or remove it"
        ) from None


def _to_rgb(path: Path, im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8; alpha is dropped, not composited."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey = to_uint8(np.asarray(im))
        return np.repeat(grey[:, :, None], 3, axis=2)
    try:
        rgb = im.convert("RGB")
    except ValueError as e:
        raise CamtraceError(
            f"{path}: unsupported image mode {im.mode} ({e}); convert it to RGB first"
        ) from None
    return np.array(rgb, dtype=np.uint8)


def to_uint8(a: np.ndarray) -> np.ndarray:
    """High-bit-depth grey to uint8 by its real range, never by clipping.

    Integers within 0..65535 are 16-bit samples (``>> 8``); floats within [0, 1] are
    scaled by 255; anything else (negative or wider values) is stretched min..max.
    """
    if a.dtype.kind in "ui" and a.min() >= 0 and a.max() <= 0xFFFF:
        return (a.astype(np.uint32) >> 8).astype(np.uint8)
    x = a.astype(np.float64)
    if a.dtype.kind == "f" and x.min() >= 0.0 and x.max() <= 1.0:
        return np.rint(x * 255).astype(np.uint8)
    lo, hi = x.min(), x.max()
    scaled = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.rint(scaled * 255).astype(np.uint8)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())
