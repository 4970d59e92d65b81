"""Marra et al. 2017, "A study of co-occurrence based local features for camera model
identification": SPAM features of 64x64 patches and linear SVMs, the hand-crafted baseline of
Bondi 2017 (Fig. 3, purple line: single patch and majority vote over K patches).

The features are SPAM-style (Pevny, Bas & Fridrich 2010): for each of R, G, B, G-R and G-B
and each direction, the co-occurrence of neighbouring first-order (x[i+1] - x[i]) and, on R,
G, B, second-order (x[i-1] - 2 x[i] + x[i+1]) residuals truncated to [-2, 2]; 400 values.
Marra's variant has 338 (Bondi Sec. III-A); the family, the truncation and the linear
classifier are theirs, the exact residual set is a guess. Demosaicing, sharpening,
denoising, noise and JPEG shape these histograms; scene content mostly falls outside the
truncation.

Nothing is learnt by gradient: training standardises the features on the training patches
and fits Bondi's one-vs-one linear SVMs on them (``ModelSpec.handcrafted``). The histogram
has no gradient, so gradient attacks refuse this detector; score-based ones (Square) run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from camtrace.errors import CamtraceError
from camtrace.models.base import Detector
from camtrace.models.registry import register
from camtrace.models.spec import ModelSpec
from camtrace.models.svm import OvOLinearSVM

SPAM_T = 2  # residuals truncated to [-T, T]: small residuals carry the trace, edges the scene
LEVELS = 2 * SPAM_T + 1
SPAM_DIM = 2 * (5 + 3) * LEVELS * LEVELS  # 2 directions x 8 residuals x 5x5 co-occurrences


def _pair_histogram(residual: np.ndarray, axis: int) -> np.ndarray:
    """(N, 25) normalised co-occurrences of truncated residuals at neighbouring pixels along
    ``axis`` of each (H, W) map of ``residual`` (N, H, W): SPAM's first-order Markov
    transition counts (Pevny et al. 2010, Sec. 3)."""
    q = np.clip(np.rint(residual), -SPAM_T, SPAM_T).astype(np.int64) + SPAM_T
    length = q.shape[axis]
    first = np.take(q, np.arange(length - 1), axis=axis)
    second = np.take(q, np.arange(1, length), axis=axis)
    n = len(q)
    codes = (first * LEVELS + second).reshape(n, -1)
    # one bincount for the whole batch: sample k's codes shifted into its own 25 bins
    codes = codes + (np.arange(n) * LEVELS * LEVELS)[:, None]
    counts = np.bincount(codes.ravel(), minlength=n * LEVELS * LEVELS)
    return counts.reshape(n, LEVELS * LEVELS) / max(codes.shape[1], 1)


def spam_features(pixels: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) pixels in [0, 255] (uint8 or float) -> (N, 400) SPAM-style features.

    No maintained Python library computes SPAM features, hence by hand."""
    if pixels.ndim != 4 or pixels.shape[3] != 3 or min(pixels.shape[1:3]) < 3:
        raise CamtraceError(
            f"spam_features: need (N, H, W, 3) pixels of at least 3x3, got {pixels.shape}"
        )
    if len(pixels) == 0:
        return np.zeros((0, SPAM_DIM))
    x = np.asarray(pixels, dtype=np.float64)  # no copy of the float64 batch `features` passes
    planes = [x[..., 0], x[..., 1], x[..., 2], x[..., 1] - x[..., 0], x[..., 1] - x[..., 2]]
    features = []
    for axis in (1, 2):
        for k, plane in enumerate(planes):
            features.append(_pair_histogram(np.diff(plane, axis=axis), axis))
            if k < 3:
                features.append(_pair_histogram(np.diff(plane, n=2, axis=axis), axis))
    return np.concatenate(features, axis=1)


@register(
    ModelSpec(
        name="marra2017",
        paper="Marra et al., MTAP 2017 (Bondi 2017's SPAM baseline)",
        patch_size=64,
        min_patch_size=8,
        protocol="bondi",
        svm=True,
        mixed_precision=False,
        handcrafted=True,
    )
)
class Marra2017(Detector):
    """SPAM features, standardised on the training patches, classified by one-vs-one linear
    SVMs; before they are fitted every pair votes for its second class."""

    def __init__(self, classes: list[str], patch_size: int | None = None) -> None:
        super().__init__(classes, patch_size)
        self.register_buffer("feature_mean", torch.zeros(SPAM_DIM))
        self.register_buffer("feature_scale", torch.ones(SPAM_DIM))
        self.svm: nn.Module = OvOLinearSVM(self.num_classes, SPAM_DIM)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        pixels = z.detach().permute(0, 2, 3, 1).cpu().double().numpy()
        f = torch.from_numpy(spam_features(pixels)).to(z.device, torch.float32)
        return (f - self.feature_mean) / self.feature_scale

    def head(self, e: torch.Tensor) -> torch.Tensor:
        return self.svm(e)

    def fit_preprocessing(self, patches_uint8: torch.Tensor) -> None:
        """Mean and standard deviation of each feature over the training patches (N, H, W, 3)."""
        f = np.concatenate(
            [spam_features(chunk.numpy()) for chunk in patches_uint8.cpu().split(1024)]
        )
        self.feature_mean.copy_(torch.from_numpy(f.mean(0)))
        # a bin no training patch fills stays 0 after centring; 1 keeps it so
        self.feature_scale.copy_(torch.from_numpy(np.where(f.std(0) > 0, f.std(0), 1.0)))
