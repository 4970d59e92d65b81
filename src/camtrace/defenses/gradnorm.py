"""Zhao et al. Sec. 3.2, eq. 5: the gradient-norm penalty (double backpropagation).

L(x, y) = J(x, y) + lambda ||grad_x J(x, y)||_p, J the cross-entropy (eq. 6), per sample: the
loss is kept flat around each training point, so a small input change cannot change it much.
The penalty's own gradient needs the second-order graph (``create_graph=True``), so a step
costs about three passes instead of two. ``x`` is in 0-255 pixel units, so the input gradient
(and lambda) are per grey level. The inner gradient is not loss-scaled: under fp16 autocast
(CUDA without bf16) it may underflow; fp32 and bf16 are unaffected.

Zhao do not state lambda; ``camtrace run zhao2019-lambda`` chooses it on validation (see
:data:`DEFAULT_LAMBDA`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

NORMS = {"l1": 1.0, "l2": 2.0, "linf": math.inf}

DEFAULT_LAMBDA = 0.01
"""Chosen on validation by ``camtrace run zhao2019-lambda`` (yang2018, 64 px, 4 epochs; the
rule fixed before the run: the best FGSM accuracy among the lambdas that keep clean accuracy
within 2 points of the undefended detector). Clean / FGSM eps 1, 3, 5 accuracy: undefended
56.6 / 12.5, 11.0, 11.0%; lambda 0.01 55.6 / 13.0, 11.0, 11.0%; 0.1 57.2 / 11.0, 11.0,
11.0%; 1 59.1 / 12.5, 11.5, 10.5%; 10 48.7 / 15.5, 11.5, 11.5% (200 patches: +-2.3 points).
The differences are noise: on its own the penalty bought no measurable robustness here."""


def widened(t: torch.Tensor) -> torch.Tensor:
    """``t`` in fp32 at least (bf16/fp16 logits of autocast widened; float64 kept)."""
    return t if t.dtype == torch.float64 else t.float()


def penalised_losses(
    model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, lam: float, norm: str = "l2"
) -> torch.Tensor:
    """Per-sample J_i + lam ||grad_{x_i} J||_p (Zhao eq. 5), differentiable in the weights.

    The input gradient is that of the summed loss, so each sample gets its own gradient
    (BatchNorm in training mode couples the samples of a batch, as it does in the forward).
    """
    x = x.detach().requires_grad_(True)
    j = F.cross_entropy(widened(model(x)), labels, reduction="none")
    (grad,) = torch.autograd.grad(j.sum(), x, create_graph=True)
    return j + lam * widened(grad).flatten(1).norm(p=NORMS[norm], dim=1)


@dataclass(frozen=True)
class GradNormPenalty:
    """The training objective of eq. 5: the minibatch mean of :func:`penalised_losses`."""

    lam: float = DEFAULT_LAMBDA
    norm: str = "l2"

    def __call__(
        self, model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        return penalised_losses(model, x, labels, self.lam, self.norm).mean()

    def sample_losses(
        self, model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        return penalised_losses(model, x, labels, self.lam, self.norm)

    @property
    def card(self) -> dict[str, Any]:
        return {"kind": "gradnorm", "lambda": self.lam, "norm": self.norm}
