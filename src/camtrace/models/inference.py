"""Running a detector on patches and on whole images (Bondi 2017, "Deploying the system").

A patch is labelled by the SVM battery when the checkpoint has one, else by the network's
arg-max; an image is labelled by majority vote over its K best patches. Every grid block
can also be labelled, which draws the attribution map that exposes splicing (Bondi Fig. 5).
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

from camtrace.data.images import load_rgb
from camtrace.data.patches import (
    PatchProtocol,
    extract_patches,
    get_protocol,
    grid_patches,
    grid_positions,
)

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


@dataclass
class Identification:
    """Which camera model shot an image, and how the patches voted."""

    path: str
    model: str
    vote_share: float
    scores: dict[str, float]
    patch_labels: list[str] = field(repr=False)
    positions: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "model": self.model,
            "vote_share": round(self.vote_share, 4),
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "patches": len(self.patch_labels),
        }


def identify(
    detector: Detector, image: str | Path | np.ndarray, k: int | None = None
) -> Identification:
    """Label an image (path or (H, W, 3) uint8 array) by majority vote over K patches.

    ``scores`` are each model's share of the patch votes; ties go to the larger summed
    per-patch score.
    """
    path = str(image) if not isinstance(image, np.ndarray) else "<array>"
    protocol = patch_protocol(detector)
    rgb = load_rgb(image, min_size=protocol.size) if not isinstance(image, np.ndarray) else image
    if k is not None:
        protocol = get_protocol(protocol.name, size=protocol.size, count=k)
    patches, positions, _ = extract_patches(rgb, protocol, np.random.default_rng(0))
    scores = patch_scores(detector, patches)
    labels = scores.argmax(1)
    votes = np.bincount(labels, minlength=detector.num_classes).astype(float)
    winner = int(np.lexsort((scores.sum(0), votes))[-1])
    share = votes / votes.sum()
    return Identification(
        path=path,
        model=detector.classes[winner],
        vote_share=float(share[winner]),
        scores={c: float(s) for c, s in zip(detector.classes, share)},
        patch_labels=[detector.classes[i] for i in labels],
        positions=positions,
    )


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
