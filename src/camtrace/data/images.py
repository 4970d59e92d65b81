"""Robust image reading: every photo enters camtrace as (H, W, 3) uint8 RGB.

``load_rgb`` turns every way a file can be wrong (missing, not an image, truncated,
decompression bomb, too small) into a one-line :class:`CamtraceError` naming the file and
the fix, so a dataset build can skip the file and go on. ``load_photo`` reads the same pixels
for an identification and says why they may carry no colour camera traces (greyscale,
indexed colour, 16-bit samples, heavily resized, screenshot-sized PNG). Writing is the
codec's (:func:`camtrace.data.codec.save_image`).
"""

from __future__ import annotations

import struct
import warnings
import zlib
from dataclasses import dataclass
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


GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
EXIF_IFD, EXIF_WIDTH, EXIF_HEIGHT = 0x8769, 0xA002, 0xA003  # PixelX/YDimension (EXIF 2.3)
RESIZED_BELOW = 0.5  # "heavily resized": the long side under half the one the camera recorded
# Common display resolutions, landscape (StatCounter's desktop and mobile lists; Apple's
# iPhone screens): a PNG of exactly one of these sizes is most likely a screen capture.
SCREEN_SIZES = frozenset(
    {
        (1280, 720), (1280, 800), (1366, 768), (1440, 900), (1536, 864), (1600, 900),
        (1680, 1050), (1920, 1080), (1920, 1200), (2560, 1080), (2560, 1440), (2560, 1600),
        (2880, 1800), (3024, 1964), (3440, 1440), (3840, 2160), (1334, 750), (1792, 828),
        (2340, 1080), (2400, 1080), (2436, 1125), (2532, 1170), (2556, 1179),
        (2688, 1242), (2778, 1284), (2796, 1290), (3200, 1440),
    }
)  # fmt: skip


@dataclass(frozen=True)
class Photo:
    """A photo read for identification: its pixels (H, W, 3) uint8 and, one line each, why
    they may carry no colour camera traces (an answer from them is no evidence)."""

    rgb: np.ndarray
    warnings: tuple[str, ...] = ()
    path: str = "<array>"


def load_rgb(path: str | Path, min_size: int = 0, max_pixels: int = 100_000_000) -> np.ndarray:
    """Read ``path`` as (H, W, 3) uint8 RGB, upright per its EXIF orientation.

    Grey, palette, alpha, CMYK, YCbCr and 16/32-bit images are converted (alpha dropped,
    high bit depths rescaled, see :func:`to_uint8`). Pillow's own bomb warning is silenced
    because ``max_pixels`` is checked on the header, before any pixel is decoded.
    """
    path = Path(path)
    im, _ = _read(path, min_size, max_pixels, inspect=False)
    return _to_rgb(path, im)


def load_photo(path: str | Path, min_size: int = 0, max_pixels: int = 100_000_000) -> Photo:
    """:func:`load_rgb`'s pixels with the warnings of :func:`header_warnings` (read before
    the pixels are converted) and, for a colour file, of :func:`colour_warnings`."""
    path = Path(path)
    im, found = _read(path, min_size, max_pixels, inspect=True)
    rgb = _to_rgb(path, im)
    grey = im.mode in GREY_MODES
    return Photo(rgb, (*found, *([] if grey else colour_warnings(rgb))), str(path))


def header_warnings(path: Path, im: Image.Image) -> list[str]:
    """What the file's header says against colour camera traces: a greyscale or indexed
    mode, more than 8 bits a sample, a size under half the one its EXIF recorded, or a PNG
    of a screen's size."""
    w, h = im.size
    out = []
    if im.mode in GREY_MODES:
        out.append(f"greyscale ({im.mode}): no colour filter array traces")
    if im.mode in ("P", "PA"):
        out.append("indexed colour (palette): the colours were quantised, the traces with them")
    if _bits_per_sample(path, im) > 8:
        out.append("more than 8 bits a sample: a raw conversion or an edit, not camera output")
    exif = im.getexif().get_ifd(EXIF_IFD)
    recorded = exif.get(EXIF_WIDTH), exif.get(EXIF_HEIGHT)
    if all(isinstance(v, int) and v > 0 for v in recorded):
        long = max(recorded)  # type: ignore[type-var]
        if max(w, h) < RESIZED_BELOW * long:
            out.append(
                f"resized to {max(w, h) / long:.0%} of the {recorded[0]}x{recorded[1]} its "
                "EXIF records: resampling erases the camera's traces"
            )
    if im.format == "PNG" and ((w, h) in SCREEN_SIZES or (h, w) in SCREEN_SIZES):
        out.append(f"screenshot-sized PNG ({w}x{h}): a screen capture, not a camera's output")
    return out


def colour_warnings(rgb: np.ndarray) -> list[str]:
    """A colour image whose channels are equal (within a grey level of rounding) everywhere
    is grey: it carries no colour filter array traces."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or not rgb.size:
        return []  # not an image: the patch cutting says so in one line
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    apart = (np.maximum(x, y) - np.minimum(x, y) for x, y in ((r, g), (g, b)))  # stays uint8
    if all(d.max() <= 1 for d in apart):
        return ["no colour (its three channels are equal): no colour filter array traces"]
    return []


def _bits_per_sample(path: Path, im: Image.Image) -> int:
    """Bits a sample: Pillow reports 16-bit RGB PNGs as 8-bit RGB, so a PNG's depth is read
    from its IHDR chunk (byte 24 of the file); a TIFF's from its BitsPerSample tag."""
    if im.mode in GREY_MODES[3:]:  # I, I;16..., F
        return 16
    if im.format == "PNG":
        with open(path, "rb") as f:
            head = f.read(25)
        return head[24] if len(head) == 25 else 8
    if im.format == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258, 8)
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return 8


def _read(
    path: Path, min_size: int, max_pixels: int, inspect: bool
) -> tuple[Image.Image, list[str]]:
    """The decoded, upright image and (``inspect``) its :func:`header_warnings`."""
    if not path.is_file():
        raise CamtraceError(f"{path}: no such file; check the path or the manifest root")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _open(path) as im:
            _check_size(path, im.size, min_size, max_pixels)
            found = header_warnings(path, im) if inspect else []
            return _decode(path, im), found


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
