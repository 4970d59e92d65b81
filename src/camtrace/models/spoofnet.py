"""SpoofNet: a small residual CNN that tells clean patches from patches processed by a
counter-forensic attack (an adversarial perturbation or a generator's output).

Adversarial perturbations of camera-model detectors are a few grey levels of high-frequency
noise, which steganalysis's noise residuals see (Liu et al., "Detection based defense
against adversarial examples from the steganalysis point of view", CVPR 2019: SPAM and SRM
features detect them). The network's first layer extracts such residuals in fp32
(docs/architecture.md, "Detector"), chosen by ``residual``:

- ``srm``: three fixed high-pass filters of Fridrich & Kodovsky's rich model (SRM, TIFS
  2012), per colour channel (9 maps), the three Zhou et al. (CVPR 2018, RGB-N's noise
  stream) keep: the 3x3 "KB" square, the 5x5 "KV" square and the second-order horizontal
  difference, each divided by its centre weight's magnitude over the others' (1/4, 1/12, 1/2);
- ``bayar``: a Bayar & Stamm constrained convolution (TIFS 2018, Eq. 2: per filter and
  channel the centre is -1 and the rest sums to 1), 6 learnt 5x5 prediction-error filters;
- ``srm+bayar`` (the default): both, concatenated (15 maps).

Then four conv 3x3 - BatchNorm - ReLU blocks (16, 16, 32, 64 channels, average pooling by 2
after the second and third), global average pooling (the 64-d embedding) and a linear layer
to the classes ``("clean", "attacked")``. No padding in the residual layer (60 x 60 maps
from 64 x 64 patches), "same" padding after it. A design of camtrace, not a paper's: the
residual layer was chosen by measurement (docs/spoof-detection.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from camtrace.errors import CamtraceError
from camtrace.models.base import Detector, in_fp32
from camtrace.models.mislnet import ConstrainedConv2d
from camtrace.models.registry import register
from camtrace.models.spec import ModelSpec

SPOOF_CLASSES = ("clean", "attacked")
"""A spoof detector's classes, in its logits' order."""
RESIDUALS = ("srm+bayar", "srm", "bayar")
"""The residual layers SpoofNet is built with (the first is the default)."""
SRM_KERNELS = torch.tensor(
    [
        [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]],
        [
            [-1, 2, -2, 2, -1],
            [2, -6, 8, -6, 2],
            [-2, 8, -12, 8, -2],
            [2, -6, 8, -6, 2],
            [-1, 2, -2, 2, -1],
        ],
        [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
    ],
    dtype=torch.float32,
) / torch.tensor([4.0, 12.0, 2.0]).view(3, 1, 1)
"""SRM's KB, KV and second-order filters (Fridrich & Kodovsky 2012), scaled as in Zhou 2018."""
BAYAR_FILTERS = 6


class SRMFilters(nn.Module):
    """The fixed SRM filters on each colour channel: (N, 3, H, W) -> (N, 9, H - 4, W - 4),
    channel 3c + k the k-th filter on colour c; a buffer, never trained, computed in fp32."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernels", SRM_KERNELS[:, None].repeat(3, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return in_fp32(lambda z: F.conv2d(z, self.kernels.float(), groups=3), x)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """conv 3x3 ("same") -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


@register(
    ModelSpec(
        name="spoofnet",
        paper="camtrace: SRM (Fridrich & Kodovsky 2012) and Bayar & Stamm 2018 residuals",
        patch_size=64,
        min_patch_size=8,
        protocol="bondi",
        mixed_precision=False,  # not checked in bf16
    )
)
class SpoofNet(Detector):
    """Residual layer (``residual``: srm, bayar or srm+bayar) + 4 conv blocks + linear."""

    def __init__(
        self, classes: list[str], patch_size: int | None = None, residual: str = RESIDUALS[0]
    ) -> None:
        if residual not in RESIDUALS:
            raise CamtraceError(f"spoofnet: residual {residual!r} unknown; use {RESIDUALS}")
        super().__init__(classes, patch_size, residual=residual)
        self.srm = SRMFilters() if "srm" in residual else None
        self.constrained = ConstrainedConv2d(3, BAYAR_FILTERS, 5) if "bayar" in residual else None
        maps = 9 * (self.srm is not None) + BAYAR_FILTERS * (self.constrained is not None)
        self.body = nn.Sequential(
            _block(maps, 16),
            _block(16, 16),
            nn.AvgPool2d(2),
            _block(16, 32),
            nn.AvgPool2d(2),
            _block(32, 64),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(64, self.num_classes)

    def residuals(self, x: torch.Tensor) -> torch.Tensor:
        """The residual maps of [0, 255] pixels (N, 3, H, W) -> (N, 15 | 9 | 6, H - 4, W - 4)."""
        maps = [layer(x) for layer in (self.srm, self.constrained) if layer is not None]
        return torch.cat(maps, 1)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.residuals(z))

    def head(self, e: torch.Tensor) -> torch.Tensor:
        return self.classifier(e)

    def project_constraints(self) -> None:
        if self.constrained is not None:
            self.constrained.project()
