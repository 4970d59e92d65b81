"""One frozen :class:`DefenseConfig` (Zhao's two defences, alone or together) and
:func:`make_objective`, the training objective it stands for.

The fields carry their meaning and bounds as dataclass metadata (``doc``, ``minimum``,
``choices``, ``when``), so the experiment config parses a ``defense:`` mapping and writes its
reference from these definitions, as for every other section.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from camtrace.defenses.advtrain import LINF_ATTACKS, MixedAdversarial
from camtrace.defenses.gradnorm import DEFAULT_LAMBDA, NORMS, GradNormPenalty
from camtrace.errors import CamtraceError
from camtrace.training.engine import Objective

KINDS = ("none", "gradnorm", "advtrain", "both")
PENALTY = ("kind", ("gradnorm", "both"))
MIXING = ("kind", ("advtrain", "both"))


def _key(default: Any, doc: str, **meta: Any) -> Any:
    return field(default=default, metadata={"doc": doc, **meta})


@dataclass(frozen=True)
class DefenseConfig:
    """A training-time defence of Zhao et al. (Sec. 3.2): ``gradnorm`` (eq. 5), ``advtrain``
    (eq. 7), ``both`` (eq. 7 over eq. 5's penalised loss) or ``none``."""

    SHORTHAND = "kind"

    kind: Literal["none", "gradnorm", "advtrain", "both"] = _key(
        "none", "gradnorm: eq. 5 penalty; advtrain: eq. 7 mixed batches; both; none"
    )
    lam: float = _key(
        DEFAULT_LAMBDA,
        "lambda of eq. 5 (Zhao: not stated; zhao2019-lambda chooses it)",
        minimum=0,
        when=PENALTY,
    )
    norm: Literal["l1", "l2", "linf"] = _key(
        "l2", "norm of the input gradient (Zhao: l2)", when=PENALTY
    )
    attack: str = _key(
        "fgsm", "attack crafting the adversarial patches", choices=lambda: LINF_ATTACKS, when=MIXING
    )
    k: int = _key(32, "adversarial patches per minibatch (Zhao: 32 of 64)", minimum=1, when=MIXING)
    alpha: float = _key(0.2, "weight of the adversarial losses (Zhao: 0.2)", minimum=0, when=MIXING)
    eps_min: float = _key(1.0, "smallest eps, 0-255 units (Zhao: 1)", minimum=0, when=MIXING)
    eps_max: float = _key(5.0, "largest eps, 0-255 units (Zhao: 5)", minimum=0, when=MIXING)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            _fail("kind", self.kind, " | ".join(KINDS))
        if self.norm not in NORMS:
            _fail("norm", self.norm, " | ".join(NORMS))
        if self.attack not in LINF_ATTACKS:
            _fail("attack", self.attack, " | ".join(LINF_ATTACKS))
        if not self.lam >= 0:
            _fail("lam", self.lam, "a number >= 0")
        if not (isinstance(self.k, int) and self.k >= 1):
            _fail("k", self.k, "an integer >= 1")
        if not self.alpha > 0:
            _fail("alpha", self.alpha, "a number > 0")
        if not (0 < self.eps_min and math.ceil(self.eps_min) <= math.floor(self.eps_max)):
            raise CamtraceError(
                f"defense eps range [{self.eps_min:g}, {self.eps_max:g}]: need 0 < eps_min and a "
                "whole grey level between eps_min and eps_max (0-255 units)"
            )
        for f in dataclasses.fields(self):
            on, kinds = f.metadata.get("when") or ("kind", KINDS)
            if getattr(self, on) not in kinds and getattr(self, f.name) != f.default:
                raise CamtraceError(
                    f"defense {f.name} applies to kind {' or '.join(kinds)} only, not {self.kind}"
                )

    @property
    def card(self) -> dict[str, Any]:
        """The defence and the parameters that apply to it, for checkpoint cards."""
        objective = make_objective(self)
        return {"kind": "none"} if objective is None else objective.card


def _fail(key: str, value: Any, allowed: str) -> None:
    raise CamtraceError(f"defense {key}={value!r}: use {allowed}")


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
