"""One frozen :class:`DefenseConfig` (Zhao's two defences, alone or together) and
:func:`make_objective`, the training objective it stands for.

A config section (:mod:`camtrace.schema`): the experiment config parses a ``defense:``
mapping and writes its reference from these definitions, as for every other section.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from camtrace.defenses.advtrain import LINF_ATTACKS, MixedAdversarial
from camtrace.defenses.gradnorm import DEFAULT_LAMBDA, GradNormPenalty
from camtrace.schema import Invalid, Section, option
from camtrace.training.engine import Objective

KINDS = ("none", "gradnorm", "advtrain", "both")
PENALTY = ("kind", ("gradnorm", "both"))
MIXING = ("kind", ("advtrain", "both"))


class DefenseConfig(Section):
    """A training-time defence of Zhao et al. (Sec. 3.2): ``gradnorm`` (eq. 5), ``advtrain``
    (eq. 7), ``both`` (eq. 7 over eq. 5's penalised loss) or ``none``."""

    SHORTHAND = "kind"

    kind: Literal["none", "gradnorm", "advtrain", "both"] = option(
        "none", "gradnorm: eq. 5 penalty; advtrain: eq. 7 mixed batches; both; none"
    )
    lam: float = option(
        DEFAULT_LAMBDA,
        "lambda of eq. 5 (Zhao: not stated; zhao2019-lambda chooses it)",
        minimum=0,
        when=PENALTY,
    )
    norm: Literal["l1", "l2", "linf"] = option(
        "l2", "norm of the input gradient (Zhao: l2)", when=PENALTY
    )
    attack: str = option(
        "fgsm", "attack crafting the adversarial patches", choices=lambda: LINF_ATTACKS, when=MIXING
    )
    k: int = option(
        32, "adversarial patches per minibatch (Zhao: 32 of 64)", minimum=1, when=MIXING
    )
    alpha: float = option(
        0.2, "weight of the adversarial losses (Zhao: 0.2)", minimum=0, when=MIXING
    )
    eps_min: float = option(1.0, "smallest eps, 0-255 units (Zhao: 1)", minimum=0, when=MIXING)
    eps_max: float = option(5.0, "largest eps, 0-255 units (Zhao: 5)", minimum=0, when=MIXING)

    def check(self) -> None:
        if not self.alpha > 0:
            raise Invalid("alpha", f"{self.alpha:g}: the adversarial weight must be > 0")
        if not (0 < self.eps_min and math.ceil(self.eps_min) <= math.floor(self.eps_max)):
            raise Invalid(
                "eps_max",
                f"eps range [{self.eps_min:g}, {self.eps_max:g}]: need 0 < eps_min and a whole "
                "grey level between eps_min and eps_max (0-255 units)",
            )

    @property
    def card(self) -> dict[str, Any]:
        """The defence and the parameters that apply to it, for checkpoint cards."""
        objective = make_objective(self)
        return {"kind": "none"} if objective is None else objective.card


def make_objective(config: DefenseConfig) -> Objective | None:
    """The training objective of ``config`` (None for ``none``: plain cross-entropy)."""
    penalty = GradNormPenalty(config.lam, config.norm)
    if config.kind == "gradnorm":
        return penalty
    if config.kind == "none":
        return None
    mixing = MixedAdversarial(config.attack, config.k, config.alpha, config.eps_min, config.eps_max)
    if config.kind == "advtrain":
        return mixing
    return CombinedDefense(dataclasses.replace(mixing, sample_loss=penalty.sample_losses), penalty)


@dataclass(frozen=True)
class CombinedDefense:
    """Both defences: eq. 7's mixed batch, each sample's loss penalised as in eq. 5."""

    mixing: MixedAdversarial
    penalty: GradNormPenalty

    def __call__(
        self, model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        return self.mixing(model, x, labels)

    @property
    def card(self) -> dict[str, Any]:
        return {**self.mixing.card, **self.penalty.card, "kind": "both"}
