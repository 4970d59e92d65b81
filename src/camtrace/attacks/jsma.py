"""Jacobian-based saliency map attack (Papernot et al. 2016, Alg. 3 and eq. 10), targeted, as
used by Guera et al. 2018 Sec. 3.2, on logits (JSMA-Z), in a form that scales to large patches.

Saliency of a pair (p, q) with alpha = dZ_t/dx and beta = sum_{j != t} dZ_j/dx (Papernot eq.
10): S = alpha_pq * |beta_pq| if alpha_pq > 0 and beta_pq < 0 (alpha_pq = alpha_p + alpha_q),
increasing mode (theta > 0); theta < 0 is the decreasing mode. Both values move by theta,
clipped to [0, 255], and leave the search domain; the attack stops at success or when a
fraction gamma of the values has been changed.

``step_aware`` (default) weighs each value's derivatives by the change it can still take,
delta = clip(x + theta) - x, so alpha and beta become the first-order changes of the logits
and a value near saturation is not chosen for a change it cannot make. Without clipping this
is Papernot's map times theta (same choice); ``step_aware=False`` is his map exactly.

``other="max"`` replaces the sum in beta by the gradient of the largest other logit at the
current iterate, beta = dZ_j*/dx with j* = argmax_{j != t} Z_j. The sum only asks that the
other logits fall together: a pair can lower most of them while raising one third class,
which then wins instead of t (with many classes the sum barely sees it). Against the
strongest rival, t must overtake exactly the logit that stands in its way. ``other="sum"``
(default) is Papernot's.

Written here because torchattacks' JSMA builds the dense n x n pair matrix (n = C H W, 150 M
entries already for a 64x64 RGB patch) one image at a time, and ART's variant drops the pair
and "other classes" terms: this one searches pairs only among the top-k candidates by alpha and by
-beta ((2k)^2 pairs), batched over samples, with two backward passes per iteration instead of
one per class.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from camtrace.attacks.base import Attack, Goal, register_attack, require
from camtrace.attacks.precision import AttackModel

OTHERS = ("sum", "max")


@register_attack
class JSMA(Attack):
    """Targeted JSMA; without a target it aims at the detector's runner-up class and counts
    any misclassification as success. ``theta`` in pixel units (255 saturates, Papernot's
    theta = 1); ``gamma`` max fraction of values changed; ``k`` candidates per side;
    ``other``: beta over the "sum" of the other classes (Papernot) or their "max"."""

    name = "jsma"
    inapplicable = {
        "quantize": "its values move on the 8-bit grid by construction",
        "early_stop": "it stops at success by construction",
        "through_jpeg": "its saliency map takes no gradient through JPEG",
    }

    def __init__(
        self,
        theta: float = 255.0,
        gamma: float = 0.1,
        k: int = 64,
        step_aware: bool = True,
        other: str = "sum",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        require(float(theta) != 0, "jsma: theta must be non-zero (pixel units; 255 saturates)")
        require(0 < float(gamma) <= 1, f"jsma: gamma={gamma} must be in (0, 1]")
        require(int(k) >= 1, f"jsma: k={k} must be >= 1")
        require(other in OTHERS, f"jsma: other={other!r} unknown; use 'sum' or 'max'")
        self.theta, self.gamma = float(theta), float(gamma)
        self.k, self.step_aware, self.other = int(k), step_aware, other

    def aim(self, clean_logits: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        return clean_logits.topk(2, dim=1).indices[:, 1] if target is None else target

    def run(
        self, model: AttackModel, x0: torch.Tensor, goal: Goal, aim: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, shape = x0[0].numel(), x0.shape
        x = x0.flatten(1).clone()
        domain = x < 255 if self.theta > 0 else x > 0
        steps = torch.zeros(len(x), dtype=torch.long, device=x.device)
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        for _ in range(math.ceil(n * self.gamma / 2)):
            active &= domain.sum(1) >= 2
            idx = active.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            xa = x[idx].view(-1, *shape[1:]).contiguous(memory_format=torch.channels_last)
            xa.requires_grad_(True)
            z = model(xa).float()
            done = self.reached(model, xa.detach(), z.detach(), goal, idx)
            alpha, beta = forward_derivatives(z, xa, aim[idx], self.other)
            active[idx[done]] = False
            idx, keep = idx[~done], ~done
            delta = self.change(x[idx])
            p, q = saliency_pair(alpha[keep] * delta, beta[keep] * delta, domain[idx], self.k)
            for feat in (p, q):
                x[idx, feat] = (x[idx, feat] + self.theta).clamp(0, 255).round()
                domain[idx, feat] = False
            steps[idx] += 1
        return x.view(shape), steps

    def change(self, x: torch.Tensor) -> torch.Tensor | float:
        """What a move by theta changes each value by: clipped (step-aware) or theta itself."""
        return (x + self.theta).clamp(0, 255) - x if self.step_aware else self.theta


def forward_derivatives(
    z: torch.Tensor, x: torch.Tensor, t: torch.Tensor, other: str = "sum"
) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha = dZ_t/dx and beta, flattened (N, n), in two backward passes: beta = sum_{j != t}
    dZ_j/dx (``other="sum"``, Papernot eq. 10) or dZ_j*/dx, j* the largest other logit
    (``other="max"``)."""
    z_t = z.gather(1, t[:, None]).sum()
    (alpha,) = torch.autograd.grad(z_t, x, retain_graph=True)
    if other == "sum":
        (total,) = torch.autograd.grad(z.sum(), x)
        return alpha.flatten(1), (total - alpha).flatten(1)
    rival = z.detach().scatter(1, t[:, None], -math.inf).argmax(1)
    (beta,) = torch.autograd.grad(z.gather(1, rival[:, None]).sum(), x)
    return alpha.flatten(1), beta.flatten(1)


def saliency_pair(
    alpha: torch.Tensor, beta: torch.Tensor, domain: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair (p, q) of domain features maximising alpha_pq |beta_pq| with alpha_pq > 0 and
    beta_pq < 0 (Papernot eq. 10), searched among the top-k features by alpha and by -beta.

    A sample with no such pair among its candidates takes the pair maximising
    alpha_pq - beta_pq, which still raises Z_t against the other logits.
    """
    k = min(k, alpha.shape[1])
    masked = torch.full_like(alpha, -math.inf)
    by_alpha = torch.where(domain, alpha, masked).topk(k, dim=1).indices
    by_beta = torch.where(domain, -beta, masked).topk(k, dim=1).indices
    cand = torch.cat([by_alpha, by_beta], dim=1)
    a, b, ok = alpha.gather(1, cand), beta.gather(1, cand), domain.gather(1, cand)
    a_pq = a[:, :, None] + a[:, None, :]
    b_pq = b[:, :, None] + b[:, None, :]
    pair_ok = ok[:, :, None] & ok[:, None, :] & (cand[:, :, None] != cand[:, None, :])
    valid = pair_ok & (a_pq > 0) & (b_pq < 0)
    saliency = torch.where(valid, a_pq * b_pq.abs(), -math.inf)
    fallback = torch.where(pair_ok, a_pq - b_pq, -math.inf)
    score = torch.where(valid.flatten(1).any(1)[:, None, None], saliency, fallback)
    best = score.flatten(1).argmax(1)
    i, j = best // cand.shape[1], best % cand.shape[1]
    return cand.gather(1, i[:, None]).squeeze(1), cand.gather(1, j[:, None]).squeeze(1)
