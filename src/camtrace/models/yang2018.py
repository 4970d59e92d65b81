"""Yang, Ni, Zhao, "Recapture image forensics based on Laplacian convolutional neural
networks" (IWDW 2016), the network Zhao et al. attack and defend (Zhao Sec. 2, Fig. 3).

What Zhao give: one fixed Laplacian enhancement layer (eq. 1, [[0,-1,0],[-1,4,-1],[0,-1,0]]),
then five convolution units of conv 3x3 stride 1 + BatchNorm + ReLU + average pooling 5x5
stride 2, the pooling of the fifth unit replaced by global average pooling, then one fully
connected classification layer. Yang's paper was not available offline, so these details
are a guess: channel widths 16, 32, 64, 128, 256 (doubling from the first unit); the
Laplacian applied to each colour channel separately with "same" padding, on the raw [0, 255]
pixels (the BatchNorm of the first unit removes the scale); conv padding 1 without bias
(BatchNorm follows); pooling padding 2, so each of the first four units halves the side:
64 -> 32 -> 16 -> 8 -> 4 -> global average -> 256 features -> classes.

The Laplacian (``preprocess``) runs in fp32 even under autocast (``Detector.embed``): its
output is the few-grey-level edge residual the network classifies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from camtrace.models.base import Detector
from camtrace.models.registry import register
from camtrace.models.spec import ModelSpec

LAPLACIAN = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
"""Zhao eq. 1: the fixed enhancement filter."""

WIDTHS = (16, 32, 64, 128, 256)


def _unit(c_in: int, c_out: int, pool: nn.Module) -> nn.Sequential:
    """conv 3x3 -> BatchNorm -> ReLU -> pooling (one unit of Zhao Sec. 2)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        pool,
    )


@register(
    ModelSpec(
        name="yang2018",
        paper="Yang et al., IWDW 2016; Zhao et al.",
        patch_size=64,
        min_patch_size=16,
        protocol="bondi",
        mixed_precision=False,  # not checked yet
    )
)
class Yang2018(Detector):
    """Laplacian -> 4 x (conv + BN + ReLU + avg pool 5/2) -> conv + BN + ReLU + global average
    pool (the embedding) -> fc -> classes."""

    def __init__(self, classes: list[str], patch_size: int | None = None) -> None:
        super().__init__(classes, patch_size)
        self.register_buffer("laplacian", LAPLACIAN.expand(3, 1, 3, 3).clone())
        widths = (3, *WIDTHS)
        units = [_unit(widths[i], widths[i + 1], nn.AvgPool2d(5, 2, padding=2)) for i in range(4)]
        self.body = nn.Sequential(
            *units, _unit(widths[4], widths[5], nn.AdaptiveAvgPool2d(1)), nn.Flatten()
        )
        self.classifier = nn.Linear(WIDTHS[-1], self.num_classes)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed Laplacian on each channel of the [0, 255] pixels ('same' size); fp32
        under autocast (``Detector.embed``)."""
        return F.conv2d(x, self.laplacian, padding=1, groups=3)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)

    def head(self, e: torch.Tensor) -> torch.Tensor:
        return self.classifier(e)
