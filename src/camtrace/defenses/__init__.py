"""Training-time defences of Zhao et al.: the gradient-norm penalty (``gradnorm.py``, eq. 5)
and mixed adversarial training (``advtrain.py``, eq. 7), chosen by one :class:`DefenseConfig`
and turned into a training objective by :func:`make_objective`."""

from camtrace.defenses.advtrain import MixedAdversarial, mixed_batch
from camtrace.defenses.config import DefenseConfig, make_objective
from camtrace.defenses.gradnorm import GradNormPenalty, penalised_losses

__all__ = [
    "DefenseConfig",
    "GradNormPenalty",
    "MixedAdversarial",
    "make_objective",
    "mixed_batch",
    "penalised_losses",
]
