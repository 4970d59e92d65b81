"""JPEG re-compression of uint8 batches, to check that an attack survives it (SPOC Table 4, bottom).

Pillow (libjpeg) encodes with a quality factor or with explicit quantisation tables (for
instance a camera's own, read with :meth:`Jpeg.from_file`): that is the compression success
is judged on. :meth:`Jpeg.differentiable` is kornia's differentiable stand-in for it, for
attacks that take their gradient through the compression.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np
import torch
from kornia.enhance import jpeg_codec_differentiable
from PIL import Image, JpegImagePlugin

from camtrace.errors import CamtraceError

_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
_SAMPLING_NAMES = {code: name for name, code in _SUBSAMPLING.items()}  # Pillow's get_sampling codes


@dataclass(frozen=True)
class Jpeg:
    """A JPEG re-compression: ``quality`` (1-100) or ``qtables`` (one to four 64-entry tables,
    luma first, ordered as Pillow's ``Image.quantization`` gives them),
    with chroma ``subsampling``."""

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
        if self.qtables is not None:
            _check_tables(self.qtables)
        if self.subsampling not in _SUBSAMPLING:
            raise CamtraceError(
                f"Jpeg: subsampling '{self.subsampling}' unknown; use one of "
                f"{', '.join(_SUBSAMPLING)}"
            )

    @classmethod
    def from_file(cls, path: str | os.PathLike, subsampling: str | None = None) -> Jpeg:
        """The quantisation tables and (unless given) chroma subsampling of an existing JPEG
        file, e.g. a camera's own."""
        try:
            with Image.open(path) as im:
                tables = im.quantization
                sampling = JpegImagePlugin.get_sampling(im) if tables else -1
        except (OSError, AttributeError) as exc:
            raise CamtraceError(
                f"{path}: cannot read JPEG quantisation tables ({exc}); give a .jpg file"
            ) from None
        if not tables:
            raise CamtraceError(
                f"{path}: not a JPEG file; give a .jpg file or use Jpeg(quality=...)"
            )
        return cls(
            qtables=tuple(tuple(int(v) for v in tables[i]) for i in sorted(tables)),
            subsampling=subsampling or _SAMPLING_NAMES.get(sampling, "4:2:0"),
        )

    def encode_one(self, image: np.ndarray) -> np.ndarray:
        """Compress and decode one (H, W) or (H, W, 3) uint8 array."""
        buf = io.BytesIO()
        options: dict = {"subsampling": _SUBSAMPLING[self.subsampling]}
        if self.quality is not None:
            options["quality"] = self.quality
        else:
            options["qtables"] = [list(t) for t in self.qtables]
        Image.fromarray(image).save(buf, format="JPEG", **options)
        buf.seek(0)
        with Image.open(buf) as im:
            return np.array(im)

    def __call__(self, images: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Re-compress a uint8 batch: tensor (N, C, H, W) or numpy (N, H, W, C); same kind back."""
        return recompress(images, self)

    def differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable approximation of this compression for float RGB (N, 3, H, W) in
        [0, 255]: kornia's codec (Reich et al. 2024; Shin & Song 2017's cubic rounding), always
        4:2:0, within a grey level or two of libjpeg's output on average."""
        one = torch.ones(1, device=x.device, dtype=torch.float32)
        if self.qtables is None:
            return jpeg_codec_differentiable(x / 255, one * self.quality) * 255
        luma, chroma = (
            torch.tensor(self.qtables[i], device=x.device, dtype=torch.float32).view(8, 8)
            for i in (0, min(1, len(self.qtables) - 1))
        )
        # quality 50 is kornia's unit scale: floor((table * 100 + 50) / 100) = table
        return jpeg_codec_differentiable(x / 255, one * 50, luma, chroma) * 255


def _check_tables(tables: tuple[tuple[int, ...], ...]) -> None:
    if not 1 <= len(tables) <= 4 or any(
        len(t) != 64 or not all(1 <= v <= 255 for v in t) for t in tables
    ):
        raise CamtraceError("Jpeg: qtables must be 1-4 tables of 64 integers in 1-255 (luma first)")


def as_jpeg(value: int | Jpeg | None) -> Jpeg | None:
    """Accept a quality factor, a :class:`Jpeg` or None."""
    if value is None or isinstance(value, Jpeg):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return Jpeg(quality=int(value))
    raise CamtraceError(f"jpeg={value!r}: give a quality (1-100) or a camtrace.attacks.Jpeg")


def recompress(images: torch.Tensor | np.ndarray, jpeg: Jpeg) -> torch.Tensor | np.ndarray:
    """JPEG-compress and decode every image of a uint8 batch (tensor NCHW or numpy NHWC)."""
    if isinstance(images, torch.Tensor):
        hwc = images.detach().permute(0, 2, 3, 1).cpu().numpy()
        out = recompress(hwc, jpeg)
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(images.device)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise CamtraceError(
            f"JPEG re-compression needs uint8 (N, H, W, 1|3) images, got {images.dtype} "
            f"{images.shape}"
        )
    gray = images.shape[-1] == 1
    out = [jpeg.encode_one(im[..., 0] if gray else im) for im in images]
    return np.stack(out)[..., None] if gray else np.stack(out)
