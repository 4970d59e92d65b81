"""General-purpose deep classifiers trained from scratch as camera-model identifiers, as in
Cozzolino et al. 2021 (SpoC, Sec. 5.2, Tab. 3, after the Kaggle camera-model challenge):
Xception (Chollet, CVPR 2017) and InceptionV3 (Szegedy et al., CVPR 2016), built by timm.

No pretrained weights are used (none exist offline, and SpoC trains them on camera patches).
Input: x / 127.5 - 1, the [-1, 1] range both networks were designed with (timm's mean = std =
0.5). SpoC works on 256x256 patches; the input size is a guess beyond that.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from camtrace.models.base import Detector
from camtrace.models.registry import register
from camtrace.models.spec import ModelSpec


class TimmDetector(Detector):
    """A timm classifier behind the Detector contract: embed = pooled features, head = fc."""

    timm_name: ClassVar[str] = ""

    def __init__(self, classes: list[str], patch_size: int | None = None) -> None:
        super().__init__(classes, patch_size)
        import timm  # deferred: importing timm costs seconds on every CLI start

        self.net = timm.create_model(self.timm_name, pretrained=False, num_classes=self.num_classes)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return x / 127.5 - 1.0

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(z), pre_logits=True)

    def head(self, e: torch.Tensor) -> torch.Tensor:
        classifier: nn.Module = self.net.get_classifier()
        return classifier(e)


@register(
    ModelSpec(
        name="xception",
        paper="Chollet, CVPR 2017; Cozzolino et al. 2021",
        patch_size=256,
        min_patch_size=7,
        protocol="gan",
        # bf16 81.0% vs fp32 81.9% (benchmarks/mixed_precision.py --shots 48 --epochs 8;
        # benchmarks/results/mixed-precision-xception-avx512-2026-12-07.txt)
        mixed_precision=True,
    )
)
class Xception(TimmDetector):
    """The original Xception (Chollet 2017; timm's ``legacy_xception``, not the aligned
    DeepLab variants ``xception41/65/71``); 2048-d embedding. Runs on patches down to 7 px."""

    timm_name = "legacy_xception"


@register(
    ModelSpec(
        name="inceptionv3",
        paper="Szegedy et al., CVPR 2016; Cozzolino et al. 2021",
        patch_size=256,
        min_patch_size=75,
        protocol="gan",
        mixed_precision=False,  # not checked yet: fp32 until benchmarks/mixed_precision.py passes
    )
)
class InceptionV3(TimmDetector):
    """InceptionV3 without the auxiliary classifier; 2048-d embedding. Its stem and grid
    reductions need at least 75 px."""

    timm_name = "inception_v3"
