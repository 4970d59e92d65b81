"""What a classical demosaicer recovers after MISLGAN's synthetic CFA block.

Chen et al. 2019 (Sec. 3.2) re-mosaic the input to one Bayer pattern before the generator
rebuilds the colour image, so two thirds of the samples are gone before the generator sees
them. How close an image can come back is a property of the data: :func:`remosaic_psnr`
re-mosaics uint8 images to the same pattern, demosaics them with classical algorithms and
gives each one's mean PSNR (Chen's m-PSNR) on the 8-bit result. It is a reference, not a
bound: a learned demosaicer can beat it, but a generator that also has to add a camera's
traces rarely does. OpenCV's VNG and edge-aware demosaicers take the 8-bit mosaic directly;
colour-demosaicing gives bilinear, Malvar 2004 and Menon 2007 on [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import colour_demosaicing
import cv2
import numpy as np

from camtrace.data.simcam.sensor import mosaic
from camtrace.errors import CamtraceError
from camtrace.evaluation.metrics import psnr_batch

Demosaicer = Callable[[np.ndarray, str], np.ndarray]
MARGIN = 4  # pixels of reflected context on each side; even, so the CFA phase is kept


def _colour(function: Callable[..., np.ndarray]) -> Demosaicer:
    def demosaic(raw: np.ndarray, pattern: str) -> np.ndarray:
        return function(raw.astype(np.float64) / 255, pattern) * 255

    return demosaic


def _opencv(kind: str) -> Demosaicer:
    def demosaic(raw: np.ndarray, pattern: str) -> np.ndarray:
        # OpenCV's four-letter codes (COLOR_BayerRGGB2RGB) read the tile from the top left
        code = getattr(cv2, f"COLOR_Bayer{pattern}2RGB{kind}")
        return cv2.cvtColor(raw, code).astype(np.float64)

    return demosaic


DEMOSAICERS: dict[str, Demosaicer] = {
    "bilinear": _colour(colour_demosaicing.demosaicing_CFA_Bayer_bilinear),
    "malvar2004": _colour(colour_demosaicing.demosaicing_CFA_Bayer_Malvar2004),
    "menon2007": _colour(colour_demosaicing.demosaicing_CFA_Bayer_Menon2007),
    "vng": _opencv("_VNG"),
    "edge-aware": _opencv("_EA"),
}


def remosaic(images_uint8: np.ndarray, pattern: str, algorithm: str) -> np.ndarray:
    """(N, H, W, 3) uint8 images re-mosaicked to ``pattern`` and demosaicked again with
    ``algorithm`` (a key of :data:`DEMOSAICERS`), rounded to uint8."""
    if algorithm not in DEMOSAICERS:
        raise CamtraceError(
            f"demosaicer '{algorithm}' is not one of {', '.join(DEMOSAICERS)}; pick one of those"
        )
    images = np.asarray(images_uint8)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise CamtraceError(
            f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}"
        )
    demosaic, m = DEMOSAICERS[algorithm], MARGIN
    # Reflection by an even margin keeps every mirrored sample in the phase of the sample it
    # copies, so the margin adds no sample the mosaic lacks; it spares the demosaicers'
    # border rules (colour-demosaicing mirrors across the CFA phase) a 64-px patch's edge.
    padded = np.pad(images, ((0, 0), (m, m), (m, m), (0, 0)), mode="reflect")
    out = np.stack([demosaic(np.ascontiguousarray(mosaic(x, pattern)), pattern) for x in padded])
    return np.clip(np.rint(out[:, m:-m, m:-m]), 0, 255).astype(np.uint8)


def remosaic_psnr(
    images_uint8: np.ndarray,
    pattern: str = "RGGB",
    algorithms: Sequence[str] = tuple(DEMOSAICERS),
) -> dict[str, float]:
    """Mean PSNR (dB) of each classical demosaicer after re-mosaicking to ``pattern``: what
    MISLGAN's synthetic CFA block leaves for a demosaicer to rebuild on these images. Like a
    generator's m-PSNR (:func:`camtrace.evaluation.attack_metrics.summarise_distortion`),
    the mean over the images it changed."""
    out = {}
    for a in algorithms:
        p = psnr_batch(images_uint8, remosaic(images_uint8, pattern, a))
        out[a] = float(p[np.isfinite(p)].mean()) if np.isfinite(p).any() else float("inf")
    return out
