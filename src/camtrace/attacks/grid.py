"""The 8-bit grid attacks live on: epsilons in 0-255 pixel units, and rounding a float
iterate to the nearest uint8 values that stay inside the Linf or L2 ball."""

from __future__ import annotations

import torch

from camtrace.errors import CamtraceError


def as_pixel_eps(value: float, units: str = "auto") -> tuple[float, str]:
    """Epsilon or step size in 0-255 pixel units. ``units``: ``auto`` reads values < 1 on the
    [0, 1] scale (x 255, Güera's 0.001..0.01) and 1 and above as pixel units (Zhao's 1..5);
    ``pixel`` and ``unit`` force one convention.

    Returns the value and a sentence saying which convention was used, for the CLI to print.
    """
    value = float(value)
    if not value > 0:
        raise CamtraceError(
            f"epsilon {value:g} must be positive (0-255 pixel units, or < 1 for the [0, 1] scale)"
        )
    if units == "unit" or (units == "auto" and value < 1):
        return (
            value * 255,
            f"{value:g} read on the [0, 1] scale = {value * 255:g} in 0-255 pixel units",
        )
    return value, f"{value:g} in 0-255 pixel units"


def round_in_linf_ball(x: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
    """Nearest 8-bit value of ``x`` within ``eps`` of the uint8-valued ``x0``: values that
    rounding would push outside the ball are rounded toward ``x0``."""
    q = x.round()
    outside = (q - x0).abs() > eps
    return torch.where(outside, x0 + (x - x0).trunc(), q).clamp(0, 255)


def round_in_l2_ball(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Integer perturbation near ``delta`` (per sample, ||delta||_2 <= eps) whose L2 norm
    stays <= eps: round to nearest, then, only in samples that rounding pushed outside the
    ball, round toward zero the values rounded away from it, cheapest first (least added
    distance to ``delta`` per unit of squared norm given back), until the sample fits.
    Truncating whole samples instead spends only ~60% of the budget."""
    t, q = delta.trunc(), delta.round()
    excess = q.flatten(1).square().sum(1, keepdim=True) - eps**2
    gain = (q.square() - t.square()).flatten(1)  # squared norm given back by truncating
    frac = (delta - t).abs().flatten(1)  # in [0.5, 1) where rounding went away from zero
    cost = torch.where(gain > 0, (2 * frac - 1) / gain.clamp_min(1e-12), torch.inf)
    order = cost.argsort(dim=1, stable=True)
    sorted_gain = gain.gather(1, order)
    # values with gain 0 have t == q: reverting them changes nothing
    revert_sorted = sorted_gain.cumsum(1) - sorted_gain < excess
    revert = torch.zeros_like(revert_sorted).scatter_(1, order, revert_sorted)
    return torch.where(revert.view_as(delta), t, q)
