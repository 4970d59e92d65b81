"""One codec: every image camtrace writes, and the pixels a reader decodes from it.

PNG and TIFF are lossless; JPEG is libjpeg's (through Pillow) with one :class:`Jpeg`
setting: a quality factor (libjpeg's scaling of the IJG tables of JPEG Annex K) or given
quantisation tables (e.g. a camera's own, :meth:`Jpeg.from_file`), with chroma subsampling.
:func:`save_image` writes atomically (:func:`camtrace.io.atomic_path`), EXIF included
(SimCam's Make/Model, :func:`camera_exif`). :func:`stored` is the in-memory round trip:
the uint8 image a reader gets back from the file, on which success is judged
(docs/architecture.md, "Attack call"). A :class:`Jpeg` also re-compresses uint8 batches
(numpy or torch) and gives kornia's differentiable stand-in for attacks that take their
gradient through the compression (torch and kornia are imported only there).
"""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, JpegImagePlugin

from camtrace.errors import CamtraceError
from camtrace.io import atomic_path

if TYPE_CHECKING:
    import torch

FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".jpg": "JPEG", ".jpeg": "JPEG"}
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}  # Pillow's codes (JpegImagePlugin)
DEFAULT_QUALITY = 95  # a .jpg written without a Jpeg setting
EXIF_MAKE, EXIF_MODEL = 0x010F, 0x0110


@dataclass(frozen=True)
class Jpeg:
    """A JPEG setting: ``quality`` (1-100) or ``qtables`` (one to four 64-entry tables in
    natural order, luma first, as Pillow's ``Image.quantization`` gives them), with chroma
    ``subsampling``."""

    quality: int | None = None
    qtables: tuple[tuple[int, ...], ...] | None = None
    subsampling: str = "4:2:0"

    def __post_init__(self) -> None:
        if (self.quality is None) == (self.qtables is None):
            raise CamtraceError("Jpeg: give exactly one of quality= or qtables=")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise CamtraceError(
                f"Jpeg: quality={self.quality} is outside 1-100; pick e.g. 75 or 90"
            )
        if self.qtables is not None and (
            not 1 <= len(self.qtables) <= 4
            or any(len(t) != 64 or not all(1 <= v <= 255 for v in t) for t in self.qtables)
        ):
            raise CamtraceError(
                "Jpeg: qtables must be 1-4 tables of 64 integers in 1-255 (luma first)"
            )
        if self.subsampling not in SUBSAMPLING:
            raise CamtraceError(
                f"Jpeg: subsampling '{self.subsampling}' unknown; use one of "
                f"{', '.join(SUBSAMPLING)}"
            )

    @classmethod
    def from_file(cls, path: str | os.PathLike, subsampling: str | None = None) -> Jpeg:
        """The quantisation tables and (unless given) chroma subsampling of an existing JPEG
        file, e.g. a camera's own."""
        try:
            with Image.open(path) as im:
                tables = getattr(im, "quantization", None)
                sampling = JpegImagePlugin.get_sampling(im) if tables else -1
        except OSError as exc:
            raise CamtraceError(
                f"{path}: cannot read JPEG quantisation tables ({exc}); give a .jpg file"
            ) from None
        if not tables:
            raise CamtraceError(
                f"{path}: not a JPEG file; give a .jpg file or use Jpeg(quality=...)"
            )
        names = {code: name for name, code in SUBSAMPLING.items()}
        return cls(
            qtables=tuple(tuple(int(v) for v in tables[i]) for i in sorted(tables)),
            subsampling=subsampling or names.get(sampling, "4:2:0"),
        )

    def pillow_options(self) -> dict[str, Any]:
        """Pillow's JPEG save keywords for this setting."""
        if self.quality is not None:
            return {"quality": self.quality, "subsampling": SUBSAMPLING[self.subsampling]}
        return {
            "qtables": [list(t) for t in self.qtables],
            "subsampling": SUBSAMPLING[self.subsampling],
        }

    def __call__(self, images: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Re-compress a uint8 batch: tensor (N, C, H, W) or numpy (N, H, W, C); same kind back."""
        return recompress(images, self)

    def differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable approximation of this compression for float RGB (N, 3, H, W) in
        [0, 255]: kornia's codec (Reich et al. 2024; Shin & Song 2017's cubic rounding), always
        4:2:0, within a grey level or two of libjpeg's output on average."""
        import torch
        from kornia.enhance import jpeg_codec_differentiable

        one = torch.ones(1, device=x.device, dtype=torch.float32)
        if self.qtables is None:
            return jpeg_codec_differentiable(x / 255, one * self.quality) * 255
        luma, chroma = (
            torch.tensor(self.qtables[i], device=x.device, dtype=torch.float32).view(8, 8)
            for i in (0, min(1, len(self.qtables) - 1))
        )
        # quality 50 is kornia's unit scale: floor((table * 100 + 50) / 100) = table
        return jpeg_codec_differentiable(x / 255, one * 50, luma, chroma) * 255


def as_jpeg(value: int | Jpeg | None) -> Jpeg | None:
    """Accept a quality factor, a :class:`Jpeg` or None."""
    if value is None or isinstance(value, Jpeg):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return Jpeg(quality=int(value))
    raise CamtraceError(f"jpeg={value!r}: give a quality (1-100) or a camtrace Jpeg")


@functools.lru_cache(maxsize=128)
def ijg_tables(quality: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The (luma, chroma) tables libjpeg uses at ``quality``, in natural (row-major) order:
    JPEG Annex K's tables scaled by the IJG rule, read back from libjpeg itself."""
    data = encode(np.zeros((8, 8, 3), np.uint8), Jpeg(quality=quality))
    with Image.open(io.BytesIO(data)) as im:
        return tuple(im.quantization[0]), tuple(im.quantization[1])


def camera_exif(make: str, model: str) -> bytes:
    """EXIF bytes carrying a camera's Make and Model tags."""
    exif = Image.Exif()
    exif[EXIF_MAKE] = make
    exif[EXIF_MODEL] = model
    return exif.tobytes()


def encode(image: np.ndarray, jpeg: Jpeg | None = None, exif: bytes | None = None) -> bytes:
    """File bytes of an (H, W, 3) or (H, W) uint8 ``image``: PNG when ``jpeg`` is None, else
    JPEG with its setting; ``exif`` bytes are embedded."""
    return _encode(image, "PNG" if jpeg is None else "JPEG", jpeg, exif, "image")


def decode(data: bytes) -> np.ndarray:
    """The uint8 pixels of bytes written by :func:`encode`: (H, W, 3), or (H, W) for grey."""
    with Image.open(io.BytesIO(data)) as im:
        return np.array(im)


def stored(image: np.ndarray, jpeg: Jpeg | None) -> np.ndarray:
    """The image a reader gets back from the file :func:`save_image` writes with ``jpeg``:
    ``image`` itself for a lossless file, else its JPEG decoded."""
    return image if jpeg is None else decode(encode(image, jpeg))


def recompress(images: torch.Tensor | np.ndarray, jpeg: Jpeg) -> torch.Tensor | np.ndarray:
    """JPEG-compress and decode every image of a uint8 batch (tensor NCHW or numpy NHWC)."""
    if not isinstance(images, np.ndarray):  # a torch tensor
        import torch

        hwc = images.detach().permute(0, 2, 3, 1).cpu().numpy()
        out = torch.from_numpy(recompress(hwc, jpeg))
        return out.permute(0, 3, 1, 2).contiguous().to(images.device)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise CamtraceError(
            f"JPEG re-compression needs uint8 (N, H, W, 1|3) images, got {images.dtype} "
            f"{images.shape}"
        )
    out = np.stack([stored(im if im.shape[-1] == 3 else im[..., 0], jpeg) for im in images])
    return out.reshape(images.shape)


def output_jpeg(path: str | Path, jpeg: int | Jpeg | None) -> Jpeg | None:
    """The JPEG setting an output path implies: None for a lossless suffix (where a JPEG
    setting is an error), ``jpeg`` or quality 95 for .jpg."""
    if image_format(path) != "JPEG":
        if jpeg is not None:
            raise CamtraceError(
                f"{path}: JPEG settings given for a lossless output; use a .jpg suffix"
            )
        return None
    return as_jpeg(jpeg) or Jpeg(quality=DEFAULT_QUALITY)


def image_format(path: str | Path) -> str:
    """Pillow's format name for the suffix of ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise CamtraceError(
            f"{path}: unknown image suffix {suffix!r}; use one of {', '.join(FORMATS)}"
        )
    return FORMATS[suffix]


def save_image(
    path: str | Path,
    image: np.ndarray,
    jpeg: int | Jpeg | None = None,
    *,
    exif: bytes | None = None,
) -> Path:
    """Write (H, W, 3) uint8 ``image`` atomically as PNG, TIFF or JPEG, chosen by the suffix.

    ``jpeg``: a quality (1-100) or a :class:`Jpeg`; a .jpg without it uses quality 95, a
    lossless suffix with it is an error. An image that cannot be encoded leaves no file
    (and an existing one as it was).
    """
    path = Path(path)
    fmt = image_format(path)
    jpeg = output_jpeg(path, jpeg)
    data = _encode(image, fmt, jpeg, exif, str(path))
    if path.parent.exists() and not path.parent.is_dir():
        raise CamtraceError(f"{path}: {path.parent} is not a folder; choose another output path")
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise CamtraceError(
            f"{path}: cannot write the image ({exc.strerror}); choose another output path"
        ) from None
    return path


def _encode(image: np.ndarray, fmt: str, jpeg: Jpeg | None, exif: bytes | None, what: str) -> bytes:
    """Pillow's bytes of ``image`` in ``fmt``; every refusal is a one-line CamtraceError."""
    _check_pixels(image, what)
    options = {} if jpeg is None else jpeg.pillow_options()
    if exif is not None:
        options["exif"] = exif
    buf = io.BytesIO()
    try:
        Image.fromarray(image).save(buf, format=fmt, **options)
    except (OSError, ValueError) as exc:
        raise CamtraceError(
            f"{what}: cannot encode as {fmt} ({' '.join(str(exc).split())}); "
            "check the JPEG setting and the EXIF bytes"
        ) from None
    return buf.getvalue()


def _check_pixels(image: Any, what: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise CamtraceError(f"{what}: image array is {kind}, not uint8; round and clip first")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise CamtraceError(
            f"{what}: image array has shape {image.shape}, expected (H, W, 3) or (H, W)"
        )
