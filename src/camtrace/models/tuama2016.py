"""Tuama, Comby, Chaumont, "Camera model identification with the use of deep convolutional
neural networks", WIFS 2016 (the "Tuama2016" target of Cozzolino et al. 2021, SpoC, Tab. 3).

A fixed high-pass filter layer (the KV kernel of steganalysis, applied to each colour channel
separately) turns the patch into a noise residual; three conv layers with max-pooling and two
4096-wide fully-connected layers classify it.

What the paper gives: the fixed KV pre-filter, three convolutions each followed by max-pooling,
fc 4096 -> fc 4096 -> classes, ReLU, 256x256 input, Caffe. The paper text was not available
offline, so these details are a guess (AlexNet-style, as the paper's Caffe baselines):
conv1 64@3x3 stride 2 -> ReLU -> LRN(5) -> maxpool 3/2; conv2 64@5x5 pad 2 -> ReLU -> LRN(5)
-> maxpool 3/2; conv3 32@3x3 pad 1 -> ReLU -> maxpool 3/2; dropout 0.5 before fc2 and the
classifier; the KV filter without padding; Caffe's ceil-mode pooling; PyTorch's default init.
Sizes at 256: 256 -> 252 -> 125 -> 62 -> 62 -> 31 -> 31 -> 15, i.e. 32 x 15 x 15 = 7200 inputs
to fc1; at 64: 64 -> 60 -> 29 -> 14 -> 14 -> 7 -> 7 -> 3 (288 inputs).

The KV filter (``preprocess``) runs in fp32 even under autocast (``Detector.embed``): its
residual is a few grey levels on pixels of hundreds. LRN is computed as a 1x1 convolution with
a banded channel matrix (:class:`CrossChannelLRN`), the same function as PyTorch's
``LocalResponseNorm`` but 3x faster in training (benchmarks/train_throughput.py).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from camtrace.models.base import Detector
from camtrace.models.registry import register
from camtrace.models.spec import ModelSpec

# KV kernel (Ker & Fridrich's "KV" 5x5 residual, as used by Tuama et al.), divided by 12.
KV_KERNEL = (
    torch.tensor(
        [
            [-1.0, 2.0, -2.0, 2.0, -1.0],
            [2.0, -6.0, 8.0, -6.0, 2.0],
            [-2.0, 8.0, -12.0, 8.0, -2.0],
            [2.0, -6.0, 8.0, -6.0, 2.0],
            [-1.0, 2.0, -2.0, 2.0, -1.0],
        ]
    )
    / 12.0
)


class CrossChannelLRN(nn.Module):
    """Local response normalisation across channels (Krizhevsky et al. 2012, Sec. 3.3), with
    PyTorch's ``LocalResponseNorm`` conventions (window of ``size`` channels, zero-padded, mean
    of squares): b_c = a_c / (k + alpha / size * sum_{c' in window(c)} a_c'^2) ** beta.

    The window sum is a 1x1 convolution with a banded (C, C) matrix: one matrix product in
    channels-last memory, where ``LocalResponseNorm`` pads and runs a 3-D average pooling.
    Its C multiply-adds per value are how it is computed, not the architecture's arithmetic
    (``size`` of them), so FLOP counts skip it (``uncounted_flops``).
    """

    uncounted_flops: ClassVar[bool] = True

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def window(self, channels: int, like: torch.Tensor) -> torch.Tensor:
        """(C, C, 1, 1) weights: alpha / size where channel c' is in the window of c."""
        c = torch.arange(channels, device=like.device)
        offset = c[None, :] - c[:, None]
        inside = (offset >= -(self.size // 2)) & (offset <= (self.size - 1) // 2)
        return (inside.to(like.dtype) * (self.alpha / self.size)).view(channels, channels, 1, 1)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        c = a.shape[1]
        k = torch.full((c,), self.k, dtype=a.dtype, device=a.device)
        return a * F.conv2d(a * a, self.window(c, a), k).pow(-self.beta)


def _lrn() -> CrossChannelLRN:
    """Caffe/AlexNet local response normalisation across 5 channels."""
    return CrossChannelLRN(5, alpha=1e-4, beta=0.75)


@register(
    ModelSpec(
        name="tuama2016",
        paper="Tuama et al., WIFS 2016",
        patch_size=256,
        min_patch_size=21,
        protocol="gan",
    )
)
class Tuama2016(Detector):
    """KV high-pass residual -> 3 conv + max-pool -> fc 4096 -> fc 4096 (embedding) -> classes."""

    def __init__(
        self, classes: list[str], patch_size: int | None = None, dropout: float = 0.5
    ) -> None:
        super().__init__(classes, patch_size, dropout=dropout)
        self.register_buffer("kv", KV_KERNEL.expand(3, 1, 5, 5).clone())
        self.body = nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=2),
            nn.ReLU(inplace=True),
            _lrn(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(64, 64, 5, padding=2),
            nn.ReLU(inplace=True),
            _lrn(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(64, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Flatten(),
        )
        p = self.patch_size
        with torch.no_grad():
            flat = self.body(self.preprocess(torch.zeros(1, 3, p, p))).shape[1]
        self.fc = nn.Sequential(
            nn.Linear(flat, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(4096, self.num_classes))

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed KV high-pass filter on each channel of the [0, 255] pixels ('valid');
        fp32 under autocast (``Detector.embed``)."""
        return F.conv2d(x, self.kv, groups=3)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(z))

    def head(self, e: torch.Tensor) -> torch.Tensor:
        return self.classifier(e)
