"""The losses the iterative loop ascends (``loss`` option: ce, cw, dlr), each summed over
the batch so every sample's gradient is independent of the batch it shares."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from camtrace.errors import CamtraceError


def cross_entropy_loss(
    logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None
) -> torch.Tensor:
    """Cross-entropy to ascend (Goodfellow et al. 2015; Madry et al. 2018): J(x, y) away from
    ``labels``, or -J(x, t) toward ``target``; summed, as every loss here, so each sample's
    gradient is independent of the batch it shares. Saturates: once the soft-max is one-hot
    in fp32 its gradient is exactly zero."""
    if target is None:
        return F.cross_entropy(logits, labels, reduction="sum")
    return -F.cross_entropy(logits, target, reduction="sum")


def cw_loss(
    logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None
) -> torch.Tensor:
    """Carlini & Wagner 2017's margin (their objective f_6 without the confidence clamp),
    to ascend: max_{j != y} z_j - z_y away from ``labels``, z_t - max_{j != t} z_j toward
    ``target``. Its gradient is a difference of two logits' gradients: no soft-max to
    saturate."""
    if target is None:
        return (_best_other(logits, labels) - _logit(logits, labels)).sum()
    return (_logit(logits, target) - _best_other(logits, target)).sum()


def dlr_loss(
    logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None
) -> torch.Tensor:
    """Difference of Logits Ratio of Croce & Hein 2020 (AutoAttack's APGD-DLR), to ascend,
    z sorted so that z_pi1 >= z_pi2 >= ...: -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 +
    1e-12) away from ``labels`` (y); their targeted version -(z_y - z_t) / (z_pi1 -
    (z_pi3 + z_pi4) / 2 + 1e-12) toward ``target`` (t). Invariant to a shift and a positive
    scale of the logits, so it does not saturate."""
    classes, need = logits.shape[1], 3 if target is None else 4
    kind = "untargeted" if target is None else "targeted"
    if classes < need:
        raise CamtraceError(
            f"loss 'dlr' {kind} needs >= {need} classes, the detector has {classes}; use loss 'cw'"
        )
    z = logits.sort(dim=1, descending=True).values
    if target is None:
        margin, scale = _logit(logits, labels) - _best_other(logits, labels), z[:, 0] - z[:, 2]
    else:
        margin = _logit(logits, labels) - _logit(logits, target)
        scale = z[:, 0] - (z[:, 2] + z[:, 3]) / 2
    return (-margin / (scale + 1e-12)).sum()


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]] = {
    "ce": cross_entropy_loss,
    "cw": cw_loss,
    "dlr": dlr_loss,
}
"""The losses the iterative loop ascends, by the name its ``loss`` option takes."""


def _logit(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """z_c of each sample, c its class in ``classes``."""
    return logits.gather(1, classes.unsqueeze(1)).squeeze(1)


def _best_other(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """max_{j != c} z_j of each sample, c its class in ``classes``."""
    own = F.one_hot(classes, logits.shape[1]).bool()
    return logits.masked_fill(own, -torch.inf).amax(1)
