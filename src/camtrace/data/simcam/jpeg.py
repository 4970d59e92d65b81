"""JPEG output with each model's own quantisation tables and EXIF Make/Model tags.

A model's tables are the standard IJG tables (JPEG Annex K, scaled by libjpeg's quality
rule and clipped to 1..255) at the model's quality, plus a few entry tweaks: real cameras
ship their own tables, usually close to a scaled standard one.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
from PIL import Image

from camtrace.data.simcam.preset import Jpeg
from camtrace.io import atomic_path

EXIF_MAKE, EXIF_MODEL = 0x010F, 0x0110


@functools.lru_cache(maxsize=128)
def ijg_tables(quality: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The (luma, chroma) tables libjpeg uses at ``quality``, in natural (row-major) order.

    Read back from libjpeg itself rather than re-implementing its scaling rule.
    """
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG", quality=quality)
    tables = Image.open(buf).quantization
    return tuple(tables[0]), tuple(tables[1])


def model_qtables(jpeg: Jpeg) -> tuple[list[int], list[int]]:
    """The model's (luma, chroma) tables: IJG at its quality, tweaked entries clipped to 1..255."""
    tables = []
    for base, tweaks in zip(ijg_tables(jpeg.quality), (jpeg.luma_tweaks, jpeg.chroma_tweaks)):
        table = list(base)
        for index, delta in tweaks:
            table[index] = int(np.clip(table[index] + delta, 1, 255))
        tables.append(table)
    return tables[0], tables[1]


def save_jpeg(rgb: np.ndarray, path: str | Path, jpeg: Jpeg, make: str, model: str) -> None:
    """Write ``rgb`` (H, W, 3) uint8 atomically as the camera's JPEG, with EXIF Make/Model."""
    exif = Image.Exif()
    exif[EXIF_MAKE] = make
    exif[EXIF_MODEL] = model
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(
            tmp,
            format="JPEG",
            qtables=list(model_qtables(jpeg)),
            subsampling=jpeg.subsampling,
            exif=exif.tobytes(),
        )
