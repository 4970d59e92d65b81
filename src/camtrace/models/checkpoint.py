"""Checkpoints: safetensors weights with the JSON card in the file's own metadata.

One file holds both, so weights and card can never be separated or mismatched (a
deliberate change from a sidecar ``.json``; ``camtrace info CKPT`` prints the card).
No pickle is ever read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from camtrace._version import __version__
from camtrace.errors import CamtraceError
from camtrace.io import atomic_path
from camtrace.models.base import Detector
from camtrace.models.registry import build
from camtrace.models.svm import OvOLinearSVM
from camtrace.models.zoo import resolve_checkpoint

CARD_KEY = "camtrace_card"
FORMAT_VERSION = 1
GENERATOR_KIND = "generator"  # the card's "kind" of a generative attack's checkpoint


def make_card(detector: Detector, **extra: Any) -> dict[str, Any]:
    """The checkpoint card: what a reader needs to rebuild and trust the weights.

    Fields derived from ``detector`` always win over stale ones in ``extra``.
    """
    card = {
        "format": FORMAT_VERSION,
        "camtrace_version": __version__,
        "arch": detector.arch,
        "classes": detector.classes,
        "patch_size": detector.patch_size,
        "hparams": detector.hparams,
        "input": "float RGB pixels in [0, 255], (N, 3, H, W); normalised inside the model",
        "svm": getattr(detector, "svm", None) is not None,
    }
    return {**card, **{k: v for k, v in extra.items() if k not in card}}


def save_detector(detector: Detector, path: str | Path, **card_extra: Any) -> Path:
    """Write weights + card atomically to ``path`` (``.safetensors``)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    card = make_card(detector, **{**getattr(detector, "card", {}), **card_extra})
    tensors = {k: v.detach().cpu().contiguous() for k, v in detector.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={CARD_KEY: json.dumps(card)})
    return path


def read_card(path: str | Path) -> dict[str, Any]:
    """The card of a checkpoint (a file, or a pretrained detector's name), without loading
    its weights."""
    from safetensors import safe_open

    path = resolve_checkpoint(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CamtraceError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    if CARD_KEY not in meta:
        raise CamtraceError(
            f"{path}: safetensors file without a camtrace card; not a camtrace checkpoint"
        )
    return json.loads(meta[CARD_KEY])


def load_detector(
    path: str | Path,
    arch: str | None = None,
    classes: list[str] | None = None,
    device: str | torch.device = "cpu",
) -> Detector:
    """Rebuild a detector from a checkpoint, refusing one that does not match.

    ``path``: a checkpoint file, or the name of a pretrained detector (``bondi2017``; see
    :mod:`camtrace.models.zoo`), whose sha256 is checked first. ``arch`` and ``classes``,
    when given, must equal the card's; otherwise a one-line :class:`CamtraceError` says what
    the file holds and what was asked.
    """
    path = resolve_checkpoint(path)
    card = read_card(path)
    if card.get("kind") == GENERATOR_KIND:
        raise CamtraceError(
            f"{path}: a {card.get('method')} generator checkpoint, not a detector; pass it as "
            f"--generator (with --method {card.get('method')}) and a detector as --detector"
        )
    if arch is not None and card["arch"].lower() != arch.lower():
        raise CamtraceError(
            f"{path}: checkpoint is a {card['arch']} detector, not {arch}; "
            f"pass --arch {card['arch']} or another checkpoint"
        )
    if classes is not None and list(classes) != list(card["classes"]):
        raise CamtraceError(
            f"{path}: checkpoint classes {card['classes']} differ from the requested "
            f"{list(classes)}"
        )
    det = build(card["arch"], card["classes"], card["patch_size"], **card.get("hparams", {}))
    state = load_file(str(path))
    if card.get("svm"):
        det.svm = OvOLinearSVM.empty_like(state, prefix="svm.")
    try:
        det.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise CamtraceError(
            f"{path}: weights do not fit a {card['arch']} network ({first})"
        ) from None
    det.card = card
    det.checkpoint = path  # its open-set calibration lies beside it (models/openset.py)
    return det.to(device).eval()
