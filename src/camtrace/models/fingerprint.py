"""PRNU fingerprint files: a device's fingerprint ``K`` (float32, H x W) in a safetensors
file with its JSON card in the file's own metadata, as a detector checkpoint keeps its card
(one file, never pickle), written atomically. The card: the device, how many photos made
it, their size, the residual settings, the camtrace version."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from camtrace._version import __version__
from camtrace.errors import CamtraceError
from camtrace.io import atomic_path
from camtrace.models.prnu import ResidualSettings

CARD_KEY = "camtrace_card"
KIND = "prnu-fingerprint"
FORMAT_VERSION = 1
ESTIMATOR = (
    "maximum likelihood K = sum W I / sum I^2 per colour channel, saturated pixels left out "
    "(Chen et al. 2008); channels to grey (BT.601), rows and columns zero-mean, Wiener "
    "filtered in the DFT domain"
)


@dataclass(frozen=True)
class Fingerprint:
    """A device's PRNU fingerprint and its card."""

    k: np.ndarray
    card: dict[str, Any]
    path: Path | None = None

    @property
    def device(self) -> str:
        return self.card["device"]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the photos it was estimated from."""
        return int(self.k.shape[0]), int(self.k.shape[1])

    @property
    def settings(self) -> ResidualSettings:
        """The residual settings it was made with (a photo is tested with the same)."""
        return ResidualSettings.from_dict(self.card["residual"])


def make_card(
    device: str, images: int, size: tuple[int, int], settings: ResidualSettings, **extra: Any
) -> dict[str, Any]:
    """The card of a fingerprint of ``device`` estimated from ``images`` photos of ``size``."""
    return {
        "kind": KIND,
        "format": FORMAT_VERSION,
        "camtrace_version": __version__,
        "device": device,
        "images": int(images),
        "image_size": [int(size[0]), int(size[1])],
        "residual": settings.to_dict(),
        "estimator": ESTIMATOR,
        **extra,
    }


def save_fingerprint(path: str | Path, k: np.ndarray, card: dict[str, Any]) -> Path:
    """Write ``k`` and its card atomically to ``path`` (``.safetensors``)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    with atomic_path(path) as tmp:
        save_file(
            {"fingerprint": np.ascontiguousarray(k, np.float32)},
            str(tmp),
            metadata={CARD_KEY: json.dumps(card)},
        )
    return path


def load_fingerprint(path: str | Path) -> Fingerprint:
    """Read a fingerprint file; anything else is a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CamtraceError(f"{path}: no such fingerprint file; make one with camtrace prnu enroll")
    try:
        with safe_open(str(path), framework="np") as f:
            card = json.loads((f.metadata() or {}).get(CARD_KEY, "{}"))
            k = f.get_tensor("fingerprint") if card.get("kind") == KIND else None
    except (SafetensorError, OSError, ValueError) as e:
        raise CamtraceError(f"{path}: not a readable safetensors file ({e})") from None
    if k is None:
        raise CamtraceError(
            f"{path}: not a camtrace PRNU fingerprint (no {KIND} card); make one with "
            "camtrace prnu enroll"
        )
    return Fingerprint(k, card, path)


def load_fingerprints(source: str | Path) -> list[Fingerprint]:
    """A fingerprint file, or every ``*.safetensors`` of a folder (by name)."""
    source = Path(source)
    paths = sorted(source.glob("*.safetensors")) if source.is_dir() else [source]
    if not paths:
        raise CamtraceError(
            f"{source}: no fingerprints (*.safetensors) here; enrol devices with camtrace prnu "
            "enroll DIR --device NAME --out FOLDER/NAME.safetensors"
        )
    return [load_fingerprint(p) for p in paths]
