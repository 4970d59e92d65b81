"""Adversarial images made elsewhere, judged as camtrace judges any attack's output.

``Replay(adv)(detector, clean, target=...)`` returns ``adv`` with the :class:`AttackInfo` an
attack's call gives (success on the uint8 images, after JPEG when ``jpeg`` is set, the
distortion, the scores), so outputs computed outside the attack call (a generator's pass over
a whole photo, another library's attack) are measured by the same rules. Not registered: it
has no paper parameters, only its images.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from camtrace.attacks.base import Attack, AttackInfo, Goal, Images, Target, _as_nchw, require
from camtrace.attacks.options import AttackOptions
from camtrace.attacks.precision import AttackModel


class Replay(Attack):
    """The given uint8 images (either layout) as the output of an attack on as many clean
    images of the same shape; ``options`` as any attack's (the batch is all of them)."""

    name = "replay"
    matrix = False
    needs_gradient = False
    inapplicable = {
        "early_stop": "the images are given, not searched",
        "through_jpeg": "the images are given, not searched",
        "seed": "the images are given, not searched",
    }

    def __init__(self, adv: Images, options: AttackOptions | None = None, **option_kw: Any):
        self.adv, _ = _as_nchw(adv, self.name)
        changes = {"precision": "fp32", **option_kw, "batch_size": len(self.adv)}
        super().__init__(options, **changes)

    def __call__(
        self, detector: nn.Module, images: Images, target: Target = None, labels: Target = None
    ) -> tuple[Images, AttackInfo]:
        """As every attack, on clean ``images`` of the given images' shape (one batch)."""
        x, _ = _as_nchw(images, self.name)
        require(
            x.shape == self.adv.shape,
            f"{self.name}: {tuple(self.adv.shape)} images given for {tuple(x.shape)} clean ones",
        )
        return super().__call__(detector, images, target, labels)

    def run(
        self, model: AttackModel, x0: torch.Tensor, goal: Goal, aim: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.adv.to(x0), torch.ones(len(x0), dtype=torch.long, device=x0.device)
