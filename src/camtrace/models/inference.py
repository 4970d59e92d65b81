"""Running a detector on patches and on whole images (Bondi 2017, "Deploying the system").

A patch is labelled by the SVM battery when the checkpoint has one, else by the network's
arg-max; an image is labelled by majority vote over its K best patches. Every grid block
can also be labelled, which draws the attribution map that exposes splicing (Bondi Fig. 5).
With a detector's open-set calibration (:mod:`camtrace.models.openset`) an image whose
evidence is unlike every known model's is answered :data:`UNKNOWN`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from camtrace.data.images import Photo, colour_warnings, load_photo
from camtrace.data.patches import (
    PatchProtocol,
    extract_patches,
    get_protocol,
    grid_patches,
    grid_positions,
)
from camtrace.errors import CamtraceError
from camtrace.models.openset import OpenSet, OpenSetDecision, PatchEvidence

if TYPE_CHECKING:  # base.py imports this module lazily (Detector.identify)
    from camtrace.models.base import Detector


def patch_protocol(detector: Detector) -> PatchProtocol:
    """The protocol a detector votes with: its card's, else its spec's (at its patch size)."""
    spec = getattr(detector, "card", {}).get("patches")
    if spec:
        return get_protocol(spec["name"], size=spec["size"], count=spec.get("count"))
    return get_protocol(detector.spec.protocol, size=detector.patch_size)


@contextmanager
def eval_mode(detector: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm uses its running statistics, untouched), every module's own
    previous mode restored afterwards."""
    modes = [(m, m.training) for m in detector.modules()]
    detector.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


@torch.no_grad()
def batched(
    detector: nn.Module,
    patches: np.ndarray | torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int = 512,
) -> np.ndarray:
    """``fn`` of uint8 patches (N, H, W, 3), batch by batch, as float pixels (N, 3, H, W) on
    the detector's device and dtype, in eval mode: the one batched scorer every caller uses."""
    param = next(itertools.chain(detector.parameters(), detector.buffers()))  # marra2017: none
    data = patches if torch.is_tensor(patches) else torch.from_numpy(np.ascontiguousarray(patches))
    out = []
    with eval_mode(detector):
        for start in range(0, len(data), batch_size):
            x = data[start : start + batch_size].to(param.device).permute(0, 3, 1, 2)
            out.append(fn(x.to(param.dtype)).float().cpu())
    if not out:
        return np.zeros((0, getattr(detector, "num_classes", 0)), np.float32)
    return torch.cat(out).numpy()


def embed_patches(
    detector: Detector, patches: np.ndarray | torch.Tensor, batch_size: int = 512
) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, D) features (eval mode, float32)."""
    return batched(detector, patches, detector.embed, batch_size)


def softmax_scores(
    detector: nn.Module, patches: np.ndarray | torch.Tensor, batch_size: int = 512
) -> np.ndarray:
    """(N, C) soft-max probabilities of the network's logits (any SVM ignored)."""
    return batched(detector, patches, lambda x: detector(x).float().softmax(1), batch_size)


def patch_scores(
    detector: Detector, patches: np.ndarray | torch.Tensor, batch_size: int = 512
) -> np.ndarray:
    """(N, C) per-patch class scores: SVM votes (Bondi) when fitted, else softmax."""
    svm = getattr(detector, "svm", None)
    if svm is not None:
        return batched(detector, patches, lambda x: svm(detector.embed(x)), batch_size)
    return softmax_scores(detector, patches, batch_size)


def patch_evidence(
    detector: Detector, patches: np.ndarray | torch.Tensor, batch_size: int = 512
) -> PatchEvidence:
    """Everything the open-set scores read, in one batched pass: the per-patch class scores
    of :func:`patch_scores`, the network's logits, the embeddings and, with an SVM battery,
    its pairwise decision values."""
    svm = getattr(detector, "svm", None)
    widths: list[int] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        e = detector.embed(x)
        logits = detector.head(e).float()
        parts = [svm(e) if svm is not None else logits.softmax(1), logits, e.float()]
        if svm is not None:
            parts.append(svm.decision_function(e))
        widths[:] = [p.shape[1] for p in parts]
        return torch.cat(parts, 1)

    out = batched(detector, patches, fn, batch_size)
    votes, logits, embeddings, *margins = np.split(out, np.cumsum(widths)[:-1], axis=1)
    return PatchEvidence(
        votes,
        logits,
        embeddings,
        margins[0] if margins else None,
        svm.pairs.cpu().numpy() if svm is not None else None,
    )


def majority_vote(scores: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Patch labels (arg-max of the (K, C) per-patch scores), the winner by vote count (ties
    to the larger summed score) and each class's share of the votes."""
    labels = scores.argmax(1)
    votes = np.bincount(labels, minlength=scores.shape[1]).astype(float)
    winner = int(np.lexsort((scores.sum(0), votes))[-1])
    return labels, winner, votes / votes.sum()


UNKNOWN = "unknown"


@dataclass
class Identification:
    """Which camera model shot an image, and how the patches voted.

    ``model`` is the answer: ``nearest`` (the vote's winner among the known models), or
    :data:`UNKNOWN` when the open set rejects the evidence (``open_set`` says by what score
    and threshold). ``warnings`` say why the pixels may carry no colour camera traces.
    """

    path: str
    model: str
    vote_share: float
    scores: dict[str, float]
    patch_labels: list[str] = field(repr=False)
    positions: np.ndarray = field(repr=False)
    nearest: str = ""
    open_set: OpenSetDecision | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nearest = self.nearest or self.model

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "model": self.model,
            "nearest": self.nearest,
            "vote_share": round(self.vote_share, 4),
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "patches": len(self.patch_labels),
            "open_set": None if self.open_set is None else self.open_set.to_dict(),
            "warnings": list(self.warnings),
        }


def identify(
    detector: Detector,
    image: str | Path | np.ndarray | Photo,
    k: int | None = None,
    openset: OpenSet | None = None,
) -> Identification:
    """Label an image (path, (H, W, 3) uint8 array or :class:`Photo`) by majority vote over
    K patches; with ``openset`` (the detector's calibration), answer :data:`UNKNOWN` when its
    score of the evidence falls below its threshold.

    ``scores`` are each model's share of the patch votes; ties go to the larger summed
    per-patch score.
    """
    protocol = patch_protocol(detector)
    photo = as_photo(image, protocol.size)
    if k is not None:
        protocol = get_protocol(protocol.name, size=protocol.size, count=k)
    if openset is not None:
        check_openset(openset, detector, protocol.count)
    warnings = list(photo.warnings)
    patches, positions, _ = extract_patches(photo.rgb, protocol, np.random.default_rng(0))
    evidence = patch_evidence(detector, patches)
    labels, winner, share = majority_vote(evidence.votes)
    decision = None if openset is None else openset.decide(evidence, winner)
    if decision is not None and len(patches) < openset.patches:
        warnings.append(
            f"{len(patches)} voting patches, not the {openset.patches} the open set was "
            "calibrated at: its score is noisier"
        )
    nearest = detector.classes[winner]
    return Identification(
        path=photo.path,
        model=UNKNOWN if decision is not None and not decision.known else nearest,
        vote_share=float(share[winner]),
        scores={c: float(s) for c, s in zip(detector.classes, share)},
        patch_labels=[detector.classes[i] for i in labels],
        positions=positions,
        nearest=nearest,
        open_set=decision,
        warnings=warnings,
    )


def check_openset(openset: OpenSet, detector: Detector, count: int | None) -> None:
    """Refuse a calibration of other models or of another number of voting patches."""
    if list(openset.classes) != list(detector.classes):
        raise CamtraceError(
            f"open set: the calibration's models {list(openset.classes)} are not the "
            f"detector's {detector.classes}; recalibrate with 'camtrace calibrate'"
        )
    if count != openset.patches:
        raise CamtraceError(
            f"open set: calibrated at {openset.patches} voting patches, not {count}; vote "
            "with the detector's own count or answer closed-set (--closed-set)"
        )


def as_photo(image: str | Path | np.ndarray | Photo, min_size: int) -> Photo:
    """A path read with :func:`load_photo`; an array checked by :func:`colour_warnings`."""
    if isinstance(image, Photo):
        return image
    if isinstance(image, np.ndarray):
        return Photo(image, tuple(colour_warnings(image)))
    return load_photo(image, min_size=min_size)


def block_map(detector: Detector, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label every block of the non-overlapping grid: (labels, positions, confidence).

    Confidence is the winning class's share of the SVM votes (or its softmax probability).
    """
    size = patch_protocol(detector).size
    positions = grid_positions(image.shape[0], image.shape[1], size)
    scores = patch_scores(detector, grid_patches(image, size))
    labels = scores.argmax(1)
    conf = scores.max(1) / np.maximum(scores.sum(1), 1e-12)
    return labels, positions, conf
