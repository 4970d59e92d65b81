"""DenseNet-40, growth rate k = 12 (Huang et al., "Densely connected convolutional networks",
CVPR 2017, Sec. 3-4, the CIFAR "DenseNet (L=40, k=12)" row of Tab. 2: 1.0M parameters), as the
camera-model detector of Güera et al. 2018 (Sec. 4.2) on 32x32 patches.

conv 16@3x3 -> [dense block of 12 layers BN-ReLU-conv 12@3x3 -> transition BN-ReLU-conv 1x1
(no compression) -> avgpool 2] x 2 -> dense block -> BN-ReLU -> global avgpool (the 448-d
embedding) -> fc. Plain layers, no bottleneck, no compression: not DenseNet-BC.

Huang et al. use dropout 0.2 after each conv only without data augmentation; Güera et al. do not
mention dropout, so it is off by default (``dropout`` hparam). Convs without bias and He-normal
(fan-out) init as in the authors' Torch code. Input: per-channel mean/std of the training
patches (Huang et al., Sec. 4.1), set by :meth:`DenseNet40.fit_preprocessing`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from camtrace.models.base import Detector
from camtrace.models.registry import register
from camtrace.models.spec import ModelSpec

DEPTH = 40
GROWTH = 12
INITIAL_FEATURES = 16
LAYERS_PER_BLOCK = (DEPTH - 4) // 3


def _bn_relu_conv(c_in: int, c_out: int, k: int, dropout: float) -> nn.Sequential:
    """BN -> ReLU -> conv k x k ('same') -> dropout (the composite function H_l, Sec. 3)."""
    layers: list[nn.Module] = [
        nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
    ]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class DenseLayer(nn.Module):
    """x_l = [x_0, ..., x_{l-1}, H_l([x_0, ..., x_{l-1}])] (Huang et al., Eq. 2)."""

    def __init__(self, c_in: int, growth: int, dropout: float) -> None:
        super().__init__()
        self.h = _bn_relu_conv(c_in, growth, 3, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.h(x)], dim=1)


def _dense_block(c_in: int, dropout: float) -> tuple[nn.Sequential, int]:
    """LAYERS_PER_BLOCK dense layers; returns the block and its output width."""
    layers = [DenseLayer(c_in + i * GROWTH, GROWTH, dropout) for i in range(LAYERS_PER_BLOCK)]
    return nn.Sequential(*layers), c_in + LAYERS_PER_BLOCK * GROWTH


def _transition(c: int, dropout: float) -> nn.Sequential:
    """BN -> ReLU -> conv 1x1 (c -> c, no compression) -> avgpool 2."""
    return nn.Sequential(_bn_relu_conv(c, c, 1, dropout), nn.AvgPool2d(2))


# torchvision's DenseNet has only the bottleneck (BC) layer and an ImageNet stem, so the
# plain CIFAR network is written here.
@register(
    ModelSpec(
        name="densenet40",
        paper="Huang et al., CVPR 2017; Güera et al. 2018",
        patch_size=32,
        min_patch_size=4,
        protocol="guera",
        # bf16 fails the check: 47.3% vs fp32 49.7% single patch (guera2018, AVX512-BF16)
        mixed_precision=False,
    )
)
class DenseNet40(Detector):
    """DenseNet (L=40, k=12) for 32x32 patches; 448-d pooled features feed the classifier."""

    def __init__(
        self, classes: list[str], patch_size: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__(classes, patch_size, dropout=dropout)
        self.register_buffer("mean", torch.full((3, 1, 1), 127.5))
        self.register_buffer("std", torch.full((3, 1, 1), 127.5))
        c = INITIAL_FEATURES
        stages: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1, bias=False)]
        for b in range(3):
            block, c = _dense_block(c, dropout)
            stages.append(block)
            if b < 2:
                stages.append(_transition(c, dropout))
        stages += [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*stages)
        self.fc = nn.Linear(c, self.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """He-normal (fan-out) convs, BN weight 1 / bias 0, zero fc bias (authors' code)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.body(z), 1).flatten(1)

    def head(self, e: torch.Tensor) -> torch.Tensor:
        return self.fc(e)

    def fit_preprocessing(self, patches_uint8: torch.Tensor) -> None:
        """Per-channel mean and standard deviation over the training patches (N, H, W, 3).

        The deviation is floored at one grey level so a flat channel cannot blow up the input.
        """
        total = torch.zeros(3, dtype=torch.float64)
        total_sq = torch.zeros(3, dtype=torch.float64)
        for chunk in patches_uint8.split(4096):
            v = chunk.reshape(-1, 3).double()
            total += v.sum(0)
            total_sq += v.square().sum(0)
        n = patches_uint8[..., 0].numel()
        mean = total / n
        std = (total_sq / n - mean.square()).clamp_min(0.0).sqrt().clamp_min(1.0)
        self.mean.copy_(mean.view(3, 1, 1).float())
        self.std.copy_(std.view(3, 1, 1).float())
