"""Bayar & Stamm, "Constrained convolutional neural networks: a new approach towards general
purpose image manipulation detection", IEEE TIFS 2018 (MISLnet), in the colour version that
Chen et al. 2019 (MISLGAN, Sec. 3.2) use as camera-model classifier.

constrained conv 3@5x5 (3 input channels) -> conv 96@7x7 stride 2 -> conv 64@5x5 -> conv 64@5x5
-> conv 128@1x1, each of the four followed by BatchNorm -> tanh -> maxpool 3/2, then
fc 200 -> tanh -> fc 200 -> tanh (the embedding) -> classes.

Constraint (Bayar & Stamm, Eq. 2): for every filter k and input channel c, the centre weight is
-1 and the other 24 weights sum to 1, so each filter outputs a prediction error (it sums to 0
and removes the image content).

Guesses (not stated in the papers we have offline): "same" padding (k // 2) for every conv after
the constrained one, which has none; Caffe's ceil-mode pooling; the last block also pools with
max (Bayar & Stamm may use average pooling there; the parameter count is the same); no conv
biases before BatchNorm, none in the constrained layer. Input: the raw [0, 255] pixels, as a
Caffe data layer without scaling feeds them; the constrained filters remove the mean and the
BatchNorm after conv2 removes the scale. Sizes at 256: 252 -> 126 -> 63 -> 63 -> 31 -> 31 ->
15 -> 15 -> 7 (128 x 7 x 7 = 6272 inputs to fc1); at 64: 60 -> 30 -> 15 -> 7 -> 3 -> 1 (128).
"""

from __future__ import annotations

import torch
from torch import nn

from camtrace.models.base import Detector, in_fp32
from camtrace.models.registry import register
from camtrace.models.spec import ModelSpec


class ConstrainedConv2d(nn.Conv2d):
    """Bayar-Stamm constrained convolution: per filter and channel, centre -1, others sum 1.

    Its output is a prediction error of a few grey levels on pixels of hundreds, so it runs in
    fp32 even under autocast (:func:`camtrace.models.base.in_fp32`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size, bias=False)
        self.project()

    def centre_mask(self) -> torch.Tensor:
        """Boolean mask of the centre tap, broadcastable to the weight."""
        k = self.kernel_size[0]
        mask = torch.zeros(k, k, dtype=torch.bool, device=self.weight.device)
        mask[k // 2, k // 2] = True
        return mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return in_fp32(super().forward, x)

    @torch.no_grad()
    def project(self) -> None:
        """Re-impose the constraint after an optimiser step.

        Bayar & Stamm set the centre to 0, divide the others by their sum, then set the centre
        to -1; that division blows up when an update drives the sum near 0. We use instead the
        Euclidean projection onto {sum of off-centre weights = 1}: add (1 - sum) / (k*k - 1) to
        every off-centre weight. It never divides by the sum, is the smallest change that meets
        the constraint, and agrees with the rescaling to first order when the sum is near 1.
        """
        w = self.weight
        centre = self.centre_mask()
        w.masked_fill_(centre, 0.0)
        deficit = 1.0 - w.sum(dim=(-2, -1), keepdim=True)
        w.add_(deficit / (centre.numel() - 1))
        w.masked_fill_(centre, -1.0)


def _block(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    """conv -> BatchNorm -> tanh -> maxpool 3/2 (one MISLnet conv block)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.Tanh(),
        nn.MaxPool2d(3, 2, ceil_mode=True),
    )


def _flat_size(net: nn.Module, patch_size: int) -> int:
    """Length of ``net``'s output for one patch (eval mode: BatchNorm statistics untouched)."""
    net.eval()
    with torch.no_grad():
        flat = net(torch.zeros(1, 3, patch_size, patch_size)).shape[1]
    net.train()
    return flat


@register(
    ModelSpec(
        name="mislnet",
        paper="Bayar & Stamm, TIFS 2018; Chen et al. 2019",
        patch_size=256,
        min_patch_size=35,
        protocol="gan",
        # bf16 fails the check: 61.4% vs fp32 66.3% single patch (transfer config,
        # AVX512-BF16) even with the constrained convolution in fp32
        mixed_precision=False,
    )
)
class MISLnet(Detector):
    """Constrained conv + 4 conv blocks + fc 200 -> fc 200 (embedding) -> classes."""

    def __init__(self, classes: list[str], patch_size: int | None = None) -> None:
        super().__init__(classes, patch_size)
        self.constrained = ConstrainedConv2d(3, 3, 5)
        self.body = nn.Sequential(
            _block(3, 96, 7, stride=2),
            _block(96, 64, 5),
            _block(64, 64, 5),
            _block(64, 128, 1),
            nn.Flatten(),
        )
        flat = _flat_size(nn.Sequential(self.constrained, self.body), self.patch_size)
        self.fc = nn.Sequential(nn.Linear(flat, 200), nn.Tanh(), nn.Linear(200, 200), nn.Tanh())
        self.classifier = nn.Linear(200, self.num_classes)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Raw [0, 255] pixels (see the module docstring)."""
        return x

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(self.constrained(z)))

    def head(self, e: torch.Tensor) -> torch.Tensor:
        return self.classifier(e)

    def project_constraints(self) -> None:
        self.constrained.project()
