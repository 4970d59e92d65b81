"""PRNU on files (``camtrace prnu enroll`` / ``camtrace prnu match``): a device's fingerprint
enrolled from a folder of its photos into a fingerprint file, and a photo matched against
enrolled fingerprints by PCE (Goljan et al. 2009: a match above 60)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camtrace.data.images import load_rgb
from camtrace.errors import CamtraceError
from camtrace.models.fingerprint import Fingerprint, load_fingerprints, make_card, save_fingerprint
from camtrace.models.prnu import (
    NEIGHBOURHOOD,
    THRESHOLD,
    ResidualSettings,
    intensity,
    match_pce,
    noise_residual,
)
from camtrace.workflows.prnu.batch import enrol_devices

MIN_IMAGES = 10
"""Photos a fingerprint needs at least; more is better: the estimate's variance falls as one
over the photos' summed squared intensity (Chen et al. 2008, the Cramer-Rao bound)."""
SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def image_files(folder: str | Path) -> list[Path]:
    """The photos of ``folder`` (not its subfolders), by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CamtraceError(f"{folder}: no such folder; give the folder of the device's photos")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def prnu_enroll(
    folder: str | Path,
    device: str,
    out: str | Path,
    *,
    settings: ResidualSettings = ResidualSettings(),
    min_images: int = MIN_IMAGES,
    workers: int = 2,
    progress: bool = False,
) -> Fingerprint:
    """Enrol ``device``'s fingerprint from every photo in ``folder`` (all of one size, at least
    ``min_images``) and write it to ``out`` (safetensors with its card); the residuals are
    computed by ``workers`` processes."""
    photos = image_files(folder)
    if len(photos) < min_images:
        raise CamtraceError(
            f"{folder}: {len(photos)} photos ({', '.join(SUFFIXES)}); a fingerprint needs at "
            f"least {min_images}, the more the better (flat, bright, unsaturated scenes are best)"
        )
    k, count, size = enrol_devices({device: photos}, settings, workers, progress)[device]
    card = make_card(device, count, size, settings, source=str(folder))
    path = save_fingerprint(out, k, card)
    return Fingerprint(k, card, path)


@dataclass(frozen=True)
class DeviceMatch:
    """A photo against one fingerprint: the PCE, the correlation at its peak, the peak's
    shift, whether the PCE reaches the threshold."""

    device: str
    pce: float
    rho: float
    shift: tuple[int, int]
    matched: bool
    fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "shift": list(self.shift)}


@dataclass
class MatchResult:
    """A photo against enrolled fingerprints, the highest PCE first; ``notes`` say what was
    done to compare them (a crop to the common centre)."""

    image: str
    threshold: float
    matches: list[DeviceMatch]
    notes: list[str] = field(default_factory=list)

    @property
    def device(self) -> str | None:
        """The device whose fingerprint the photo matches best, if any reaches the threshold."""
        best = self.matches[0] if self.matches else None
        return best.device if best is not None and best.matched else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "device": self.device,
            "threshold": self.threshold,
            "matches": [m.to_dict() for m in self.matches],
            "notes": self.notes,
        }


def prnu_match(
    image: str | Path | np.ndarray,
    fingerprints: str | Path | Sequence[Fingerprint],
    *,
    threshold: float = THRESHOLD,
    neighbourhood: int = NEIGHBOURHOOD,
) -> MatchResult:
    """The PCE of ``image`` (a file or an (H, W, 3) uint8 array) against every fingerprint
    (a file, a folder of them, or loaded ones), each tested with its own residual settings.
    A photo of another size than a fingerprint is compared on their common centre (a centre
    crop, e.g. digital zoom, still aligns; a rotated or shifted photo does not, and scores
    low), and a note says so."""
    rgb = image if isinstance(image, np.ndarray) else load_rgb(image)
    prints = (
        load_fingerprints(fingerprints) if isinstance(fingerprints, (str, Path)) else fingerprints
    )
    notes: list[str] = []
    tested: dict[tuple[tuple[int, int], ResidualSettings], tuple[np.ndarray, np.ndarray]] = {}
    matches = []
    for fp in prints:
        size = (min(rgb.shape[0], fp.size[0]), min(rgb.shape[1], fp.size[1]))
        if size != rgb.shape[:2] or size != fp.size:
            notes.append(
                f"{fp.device}: compared on the common centre {size[1]}x{size[0]} (photo "
                f"{rgb.shape[1]}x{rgb.shape[0]}, fingerprint {fp.size[1]}x{fp.size[0]})"
            )
        key = (size, fp.settings)
        if key not in tested:
            crop = centre(rgb, size)[None]
            tested[key] = (noise_residual(crop, fp.settings)[0], intensity(crop)[0])
        residual, luminance = tested[key]
        peak = match_pce(residual, luminance, centre(fp.k, size), neighbourhood=neighbourhood)
        matches.append(
            DeviceMatch(
                fp.device,
                float(peak.pce),
                float(peak.rho),
                (int(peak.shift[0]), int(peak.shift[1])),
                bool(peak.pce >= threshold),
                None if fp.path is None else str(fp.path),
            )
        )
    matches.sort(key=lambda m: -m.pce)
    name = "<array>" if isinstance(image, np.ndarray) else str(image)
    return MatchResult(name, threshold, matches, notes)


def centre(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The centre ``size`` (H, W) of an array (H', W', ...) at least that large."""
    top, left = (x.shape[0] - size[0]) // 2, (x.shape[1] - size[1]) // 2
    return x[top : top + size[0], left : left + size[1]]
