"""Zhao et al. Sec. 3.2, Fig. 4, eq. 7: mixed adversarial training.

In every minibatch of m patches the first k are replaced by adversarial examples crafted
against the current weights (FGSM in Zhao; any Linf camtrace attack here), each with its own
eps ~ U[eps_min, eps_max] in 0-255 units (Zhao: U[1, 5]), on uint8 like every camtrace attack.
The loss is eq. 7, sum over clean + alpha * sum over adversarial, divided by
(m - k) + alpha k: a weighted mean, so the loss keeps the scale of a mean cross-entropy and
the learning rate of an undefended run still fits. Zhao: m 64, k 32, alpha 0.2.

On the 8-bit grid a Linf attack of radius eps moves a value by at most floor(eps) (the
rounding stays inside the ball), so only whole grey levels are distinct radii: eps is drawn
uniformly among the integers of [eps_min, eps_max] (Zhao's U[1, 5]: 1, 2, 3, 4 and 5 equally
often; a continuous draw would floor to 1-4 and never give 5). Samples of one radius are
attacked together: the same uint8 outputs as one attack per sample.
The attack runs in eval mode (BatchNorm's running statistics), as every camtrace attack.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from camtrace.attacks import make_attack
from camtrace.defenses.gradnorm import widened

LINF_ATTACKS = ("fgsm", "llcm", "bim", "pgd", "mifgsm", "timifgsm")
"""The camtrace attacks with an Linf radius ``eps``, the ones the mixed batch can use."""

# Eq. 7 crafts all k, also those already misclassified: no early stop where an attack has one.
ALL_K = {a: {"early_stop": False} for a in ("bim", "pgd", "mifgsm", "timifgsm")}

SampleLoss = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropies(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy J(x_i, y_i)."""
    return F.cross_entropy(widened(model(x)), labels, reduction="none")


def draw_eps(n: int, eps_min: float, eps_max: float) -> torch.Tensor:
    """``n`` whole-grey-level radii, uniform over the integers of [eps_min, eps_max]
    (torch's global generator, as dropout)."""
    lo, hi = math.ceil(eps_min), math.floor(eps_max)
    return torch.randint(lo, hi + 1, (n,)).float()


def mixed_batch(
    model: torch.nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: torch.Tensor,
    attack: str = "fgsm",
) -> torch.Tensor:
    """``x`` with its first ``len(eps)`` patches replaced by ``attack`` examples of radius
    ``eps[i]`` (true labels, current weights, uint8 values), the rest untouched. Every one of
    the k is attacked, also those the current weights already misclassify (no early stop)."""
    k = min(len(eps), len(x))
    mixed = x.detach().clone()
    radii = eps[:k].floor()
    for r in radii.unique().tolist():
        idx = (radii == r).nonzero().squeeze(1).to(x.device)
        if r < 1:  # no 8-bit perturbation fits in a ball of radius < 1
            continue
        adv, _ = make_attack(attack, eps=r, **ALL_K.get(attack, {}))(
            model, x[idx].round().to(torch.uint8), labels=labels[idx]
        )
        mixed[idx] = adv.to(mixed.dtype)
    return mixed


@dataclass(frozen=True)
class MixedAdversarial:
    """The training objective of eq. 7 (``sample_loss``: the per-sample loss, cross-entropy
    in Zhao; the gradient-norm penalised loss for the two defences combined)."""

    attack: str = "fgsm"
    k: int = 32
    alpha: float = 0.2
    eps_min: float = 1.0
    eps_max: float = 5.0
    sample_loss: SampleLoss = field(default=cross_entropies, compare=False)

    def __call__(
        self, model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        eps = draw_eps(min(self.k, len(x)), self.eps_min, self.eps_max)
        losses = self.sample_loss(model, mixed_batch(model, x, labels, eps, self.attack), labels)
        return weighted_loss(losses, len(eps), self.alpha)

    @property
    def card(self) -> dict[str, Any]:
        return {
            "kind": "advtrain",
            "attack": self.attack,
            "k": self.k,
            "alpha": self.alpha,
            "eps": [self.eps_min, self.eps_max],
            "normaliser": "(m - k) + alpha k",
        }


def weighted_loss(losses: torch.Tensor, k: int, alpha: float) -> torch.Tensor:
    """Eq. 7 over (m - k) + alpha k: the first ``k`` losses (adversarial) weighted by alpha."""
    weights = torch.ones_like(losses)
    weights[:k] = alpha
    return (weights * losses).sum() / weights.sum()
