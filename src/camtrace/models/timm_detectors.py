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

from camtrace.errors import CamtraceError
from camtrace.models.base import Detector
from camtrace.models.registry import register


class TimmDetector(Detector):
    """A timm classifier behind the Detector contract: embed = pooled features, head = fc."""

    timm_name: ClassVar[str] = ""
    min_patch_size: ClassVar[int] = 1  # smallest patch the network runs on
    default_patch_size = 256

    def __init__(self, classes: list[str], patch_size: int | None = None) -> None:
        super().__init__(classes, patch_size)
        if self.patch_size < self.min_patch_size:
            raise CamtraceError(
                f"patch size {self.patch_size} is too small for {self.arch} "
                f"(needs >= {self.min_patch_size} px); pass --patch-size {self.min_patch_size} "
                f"or more"
            )
        import timm  # deferred: importing timm costs seconds on every CLI start

        self.net = timm.create_model(self.timm_name, pretrained=False, num_classes=self.num_classes)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return x / 127.5 - 1.0

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(z), pre_logits=True)

    def head(self, e: torch.Tensor) -> torch.Tensor:
        classifier: nn.Module = self.net.get_classifier()
        return classifier(e)


@register
class Xception(TimmDetector):
    """The original Xception (Chollet 2017; timm's ``legacy_xception``, not the aligned
    DeepLab variants ``xception41/65/71``); 2048-d embedding. Runs on patches down to 8 px."""

    arch = "xception"
    timm_name = "legacy_xception"


@register
class InceptionV3(TimmDetector):
    """InceptionV3 without the auxiliary classifier; 2048-d embedding. Its stem and grid
    reductions need at least 75 px."""

    arch = "inceptionv3"
    timm_name = "inception_v3"
    min_patch_size = 75
