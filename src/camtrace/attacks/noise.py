"""Random sign noise of radius eps: the control that separates adversarial vulnerability
from noise sensitivity (issue 22). A detector whose residual filter reads any +-1 field as
the noisiest camera falls under random noise as under FGSM; only the gap between the two is
the attack's. Same budget and 8-bit grid as the Linf attacks, no gradient, no search.

- ``noise``: x + eps s, s uniform in {-1, +1} per pixel and channel (a chroma and luma
  perturbation, as FGSM's sign field).
- ``noise-luma``: one sign per pixel, the same on R, G and B (luma only, chroma kept).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from camtrace.attacks.base import Attack, Goal, register_attack, require
from camtrace.attacks.grid import round_in_linf_ball
from camtrace.attacks.precision import AttackModel


@register_attack
class RandomSign(Attack):
    """x + eps s with uniform random signs s per pixel and channel (0-255 pixel units)."""

    name = "noise"
    needs_gradient = False
    per_channel: ClassVar[bool] = True
    inapplicable = {
        "quantize": "its outputs are on the 8-bit grid by construction",
        "early_stop": "one draw per sample, nothing to stop",
        "through_jpeg": "it takes no gradient",
        "precision": "it takes no gradient",
    }

    def __init__(self, eps: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        require(float(eps) > 0, f"{self.name}: eps={eps} must be > 0 (0-255 pixel units)")
        self.eps = float(eps)

    def precision(self, detector: torch.nn.Module, x0: torch.Tensor) -> str:
        return "fp32"

    def run(
        self, model: AttackModel, x0: torch.Tensor, goal: Goal, aim: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        gen = model.rng
        n, c, h, w = x0.shape
        shape = (n, c if self.per_channel else 1, h, w)
        signs = 2 * torch.randint(0, 2, shape, generator=gen, device=x0.device) - 1
        x = round_in_linf_ball(x0 + self.eps * signs.to(x0.dtype), x0, self.eps)
        return x, torch.ones(n, dtype=torch.long, device=x0.device)


@register_attack
class RandomSignLuma(RandomSign):
    """x + eps s with one random sign per pixel, shared by R, G and B (luma only)."""

    name = "noise-luma"
    per_channel = False
