"""One photo spoofed as a target camera model, as an analyst asks for it: :func:`spoof`
toward the target, written as a lossless PNG or as a JPEG with the target camera's own
quantisation tables (SimCam's models: :func:`camtrace.data.simcam.camera_tables`), with the
distortion of the written file (PSNR, SSIM) and the amplified difference; the budget given
as an epsilon or as the PSNR it guarantees.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from camtrace.data.codec import Jpeg, image_format, save_image
from camtrace.data.images import load_rgb
from camtrace.data.simcam import camera_tables
from camtrace.errors import CamtraceError
from camtrace.evaluation.metrics import psnr, ssim
from camtrace.models import Detector
from camtrace.workflows.config import AttackSettings
from camtrace.workflows.plots import amplified_difference
from camtrace.workflows.spoof import WholeImageResult, spoof

MAX_PSNR = 20 * math.log10(255)  # 48.13 dB: a one-grey-level Linf radius guarantees it


def eps_for_psnr(psnr_db: float) -> float:
    """The Linf radius in 0-255 pixel units that guarantees a PSNR of at least ``psnr_db``:
    no pixel moves by more than eps, so MSE <= eps^2 and PSNR = 10 log10(255^2 / MSE) >=
    20 log10(255 / eps); eps = 255 / 10^(psnr_db / 20). Above :data:`MAX_PSNR` the radius is
    below one grey level, which no 8-bit image can move by."""
    if not 0 < psnr_db <= MAX_PSNR:
        raise CamtraceError(
            f"PSNR budget {psnr_db:g} dB: give at most {MAX_PSNR:.1f} dB (a radius of one grey "
            "level) and more than 0"
        )
    return 255 / 10 ** (psnr_db / 20)


def budget_eps(kind: Literal["eps", "psnr"], value: float) -> float:
    """A budget as the attack's epsilon in 0-255 pixel units: an epsilon as given (at least
    one grey level), or :func:`eps_for_psnr` of a PSNR in dB."""
    if kind == "psnr":
        return eps_for_psnr(value)
    if kind != "eps":
        raise CamtraceError(f"budget '{kind}': give eps (0-255 grey levels) or psnr (dB)")
    if not 1 <= value <= 255:
        raise CamtraceError(f"epsilon {value:g}: give 1 to 255 grey levels")
    return float(value)


def target_jpeg(target: str | None) -> Jpeg:
    """The target camera's own JPEG setting; one line when camtrace knows none for it."""
    known = camera_tables()
    if target is None or target not in known:
        raise CamtraceError(
            f"{target or 'untargeted'}: camtrace knows the JPEG tables of SimCam's models only "
            f"({', '.join(known)}); write a PNG instead"
        )
    return known[target]


@dataclass
class SpoofedPhoto:
    """The outcome: ``result`` (identification before, and after on the written file read
    back; its ``psnr`` and ``linf`` are the attack's own change, within the budget), the
    written file's PSNR, SSIM and Linf against the clean photo (a JPEG adds its re-encoding's
    loss), its JPEG setting, and the amplified difference image with its gain."""

    result: WholeImageResult
    psnr: float
    ssim: float
    linf: int
    jpeg: str
    difference: Path
    gain: float

    def to_dict(self) -> dict[str, Any]:
        attack = self.result.to_dict()
        return {
            **attack,
            "attack_psnr": attack["psnr"],
            "attack_linf": attack["linf"],
            "psnr": self.psnr if math.isfinite(self.psnr) else None,
            "ssim": self.ssim,
            "linf": self.linf,
            "jpeg": self.jpeg,
            "gain": self.gain,
        }


def spoof_photo(
    detector: Detector,
    image: str | Path,
    out: str | Path,
    settings: AttackSettings,
    *,
    difference: str | Path,
    on_round: Callable[[int, int], None] | None = None,
) -> SpoofedPhoto:
    """Spoof ``image`` with ``settings`` and write ``out``: a .png as is, a .jpg with the
    target camera's own tables (:func:`target_jpeg`); the amplified difference of the written
    file goes to ``difference`` (PNG). ``on_round`` is told each finished attack round."""
    jpeg = target_jpeg(settings.target) if image_format(out) == "JPEG" else None
    clean = load_rgb(image)
    result = spoof(detector, image, out, settings, jpeg=jpeg, on_round=on_round)
    written = load_rgb(out)
    diff, gain = amplified_difference(clean, written)
    save_image(difference, diff)
    return SpoofedPhoto(
        result=result,
        psnr=psnr(clean, written),
        ssim=ssim(clean, written),
        linf=int(np.abs(written.astype(np.int16) - clean).max()),
        jpeg="lossless PNG" if jpeg is None else f"JPEG with {settings.target}'s own tables",
        difference=Path(difference),
        gain=gain,
    )
