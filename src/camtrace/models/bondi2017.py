"""Bondi et al. 2017, "First steps toward camera model identification with CNNs", Sec. II.

conv1 32@4x4 -> pool 2/2 -> conv2 48@5x5 -> pool -> conv3 64@5x5 -> pool -> conv4 128@5x5
-> ip1 128 -> ReLU -> ip2 N. No non-linearity between the convolutions (as published);
Caffe's ceil-mode pooling gives 64 -> 61 -> 31 -> 27 -> 14 -> 10 -> 5 -> 1.
Input: per-pixel training mean subtracted, then scaled by 0.0125.

Initialisation (not stated in the paper, a guess): Caffe's ``xavier`` filler, uniform in
+-sqrt(3 / fan_in) with zero biases, the default of DIGITS-era prototxts. PyTorch's default
init leaves this purely linear conv stack almost still at lr 0.015 on 0.0125-scaled input.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from camtrace.models.base import Detector
from camtrace.models.registry import register
from camtrace.models.spec import ModelSpec

INPUT_SCALE = 0.0125


@register(
    ModelSpec(
        name="bondi2017",
        paper="Bondi et al., ICIP 2017",
        patch_size=64,
        min_patch_size=60,
        protocol="bondi",
        svm=True,
        # bf16 fails the check: 40.4% vs fp32 44.9% single patch (transfer config,
        # AVX512-BF16; the quickstart lost 0.8 points), with the input scaling in fp32
        mixed_precision=False,
    )
)
class Bondi2017(Detector):
    """The 4-conv camera-model CNN; 128-d ReLU features feed the one-vs-one SVMs."""

    def __init__(self, classes: list[str], patch_size: int | None = None) -> None:
        super().__init__(classes, patch_size)
        p = self.patch_size
        self.register_buffer("mean", torch.full((3, p, p), 127.5))
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 4),
            nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.Conv2d(32, 48, 5),
            nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.Conv2d(48, 64, 5),
            nn.MaxPool2d(2, 2, ceil_mode=True),
            nn.Conv2d(64, 128, 5),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat = self.body(torch.zeros(1, 3, p, p)).shape[1]
        self.ip1 = nn.Linear(flat, 128)
        self.ip2 = nn.Linear(128, self.num_classes)
        self.svm: nn.Module | None = None
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                bound = math.sqrt(3.0 / m.weight[0].numel())
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * INPUT_SCALE

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.ip1(self.body(z)))

    def head(self, e: torch.Tensor) -> torch.Tensor:
        return self.ip2(e)

    def fit_preprocessing(self, patches_uint8: torch.Tensor) -> None:
        """Per-pixel mean over the training patches (N, H, W, 3), as in Caffe's mean file."""
        total = torch.zeros(self.mean.shape, dtype=torch.float64)
        for chunk in patches_uint8.split(4096):
            total += chunk.permute(0, 3, 1, 2).double().sum(0)
        self.mean.copy_((total / len(patches_uint8)).float())
