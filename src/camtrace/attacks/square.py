"""Square Attack, Linf (Andriushchenko et al., ECCV 2020, Alg. 1 with the sampling of Alg. 2):
a score-based random search that queries only forward passes, so gradient masking cannot
stop it (the gradient-free check of Carlini et al. 2019 and AutoAttack).

Loss: the margin on the logits, L = z_y - max_{k != y} z_k (untargeted, y the label) or
max_{k != t} z_k - z_t (toward target t); the attack succeeds where L < 0.
Start: vertical stripes of width 1, each column of each channel at x + eps or x - eps.
Step i: a square window of side h_i = round(sqrt(p_i H W)) at a uniform position; in each
channel the window is set to x + rho, rho uniform in {-eps, +eps} (Alg. 2's x + 2 rho from a
vertex, projected back onto the ball), then clipped to [0, 255]; the candidate replaces the
iterate only if it lowers L. p_i starts at ``p_init`` and is halved at iterations 10, 50, 200,
500, 1000, 2000, 4000, 6000 and 8000 of the paper's 10000-query budget, rescaled to ``queries``.

Every iterate is on the 8-bit grid (a non-integer eps moves values by floor(eps)), so the
verdicts of the loop are already those of the uint8 output.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from camtrace.attacks.base import Attack, Goal, register_attack, require
from camtrace.attacks.grid import round_in_linf_ball
from camtrace.attacks.precision import AttackModel

HALVING = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
"""Iterations at which p is halved, for the paper's budget of ``PAPER_QUERIES``."""
PAPER_QUERIES = 10_000


@register_attack
class Square(Attack):
    """Square Attack in the Linf ball of radius ``eps`` (0-255 pixel units) with at most
    ``queries`` forward passes per sample; ``p_init`` is the fraction of the patch the first
    squares cover (the paper's default for Linf: 0.05)."""

    name = "square"
    needs_gradient = False
    inapplicable = {
        "quantize": "its iterates are on the 8-bit grid by construction",
        "through_jpeg": "it takes no gradient",
        "precision": "it takes no gradient; every query is an fp32 forward",
    }

    def __init__(
        self, eps: float = 4.0, queries: int = 1000, p_init: float = 0.05, **options: Any
    ) -> None:
        super().__init__(**options)
        require(float(eps) > 0, f"square: eps={eps} must be > 0 (0-255 pixel units)")
        require(int(queries) >= 1, f"square: queries={queries} must be >= 1")
        require(0 < float(p_init) <= 1, f"square: p_init={p_init} must be in (0, 1]")
        self.eps, self.queries, self.p_init = float(eps), int(queries), float(p_init)

    def precision(self, detector: nn.Module, x0: torch.Tensor) -> str:
        return "fp32"

    def p_at(self, i: int) -> float:
        """Fraction of the patch changed at iteration ``i`` (the paper's schedule, rescaled)."""
        scaled = int(i / self.queries * PAPER_QUERIES)
        return self.p_init / 2 ** sum(scaled > k for k in HALVING)

    def run(
        self, model: AttackModel, x0: torch.Tensor, goal: Goal, aim: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        gen = model.rng
        n, c, h, w = x0.shape
        stripes = self._signs((n, c, 1, w), gen, x0) * self.eps
        x = round_in_linf_ball(x0 + stripes, x0, self.eps)
        idx = torch.arange(n, device=x0.device)
        logits = model.judge(x)
        loss = margin(logits, goal, aim, idx)
        queries = torch.ones(n, dtype=torch.long, device=x0.device)
        active = torch.ones(n, dtype=torch.bool, device=x0.device)
        if self.options.early_stop:
            active &= ~self.reached(model, x, logits, goal, idx)
        for i in range(1, self.queries):
            idx = active.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            side = min(max(round(math.sqrt(self.p_at(i) * h * w)), 1), h, w)
            window = self._window(len(idx), side, h, w, gen, x0)
            rho = self._signs((len(idx), c, 1, 1), gen, x0) * self.eps
            candidate = torch.where(
                window, round_in_linf_ball(x0[idx] + rho, x0[idx], self.eps), x[idx]
            )
            logits = model.judge(candidate)
            new_loss = margin(logits, goal, aim, idx)
            queries[idx] += 1
            better = new_loss < loss[idx]
            kept = idx[better]
            x[kept], loss[kept] = candidate[better], new_loss[better]
            if self.options.early_stop and kept.numel():
                active[kept[self.reached(model, x[kept], logits[better], goal, kept)]] = False
        return x, queries

    @staticmethod
    def _signs(
        shape: tuple[int, ...], gen: torch.Generator | None, like: torch.Tensor
    ) -> torch.Tensor:
        """Uniform signs in {-1, +1} of ``shape``."""
        bits = torch.randint(0, 2, shape, generator=gen, device=like.device)
        return (2 * bits - 1).to(like.dtype)

    @staticmethod
    def _window(
        n: int, side: int, h: int, w: int, gen: torch.Generator | None, like: torch.Tensor
    ) -> torch.Tensor:
        """(n, 1, h, w) masks of one side x side square each, at uniform positions."""
        top = torch.randint(0, h - side + 1, (n, 1), generator=gen, device=like.device)
        left = torch.randint(0, w - side + 1, (n, 1), generator=gen, device=like.device)
        rows = torch.arange(h, device=like.device)
        cols = torch.arange(w, device=like.device)
        in_rows = (rows >= top) & (rows < top + side)
        in_cols = (cols >= left) & (cols < left + side)
        return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def margin(
    logits: torch.Tensor, goal: Goal, aim: torch.Tensor | None, idx: torch.Tensor
) -> torch.Tensor:
    """The margin loss of the samples ``idx``: z_y - max_{k != y} z_k away from the label
    y, or max_{k != t} z_k - z_t toward the aim t; negative where the attack succeeds."""
    logits = logits.float()
    own = goal.labels[idx] if aim is None else aim[idx]
    z_own = logits.gather(1, own[:, None]).squeeze(1)
    z_other = logits.scatter(1, own[:, None], -math.inf).amax(1)
    return z_own - z_other if aim is None else z_other - z_own
