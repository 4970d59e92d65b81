"""Gradient attacks on the shared loop: FGSM, LLCM, BIM/I-FGSM, PGD (Linf, L2), MI-FGSM, TI-MI-FGSM.

All eps/alpha in 0-255 pixel units. Papers: FGSM as in Guera et al. 2018 Sec. 3.1 (gradient at
the detector's own predicted label); LLCM as in Zhao et al. Sec. 3.1 eq. 3-4; BIM of Kurakin
et al. 2017; PGD of Madry et al. 2018; MI-FGSM of Dong et al. 2018; TI-MI-FGSM of Dong et al.
2019 (the baselines of Cozzolino et al. 2021, SPOC, Sec. 4). Each constructor lists its paper
parameters and the ``loss`` it ascends (``ce``; ``cw``, ``dlr``: the margin losses of
:data:`camtrace.attacks.base.LOSSES`); the options every attack shares
(:class:`AttackOptions`) come as keywords.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from camtrace.attacks.base import GradientAttack, register_attack, require


@register_attack
class FGSM(GradientAttack):
    """x* = x + eps sign(grad_x J(x, y)) (Guera eq. in Sec. 3.1), y the detector's prediction
    (or the true label if given); targeted: x - eps sign(grad_x J(x, t))."""

    name = "fgsm"
    inapplicable = {"early_stop": "a single step has nothing to stop"}

    def __init__(self, eps: float = 4.0, loss: str = "ce", **options: Any) -> None:
        super().__init__(eps, eps, 1, loss=loss, **options)


@register_attack
class LLCM(FGSM):
    """Least-likely class method (Zhao eq. 3-4): x - eps sign(grad_x J(x, y_min)), y_min the
    class the detector finds least likely on the clean image. Success is misclassification."""

    name = "llcm"

    def aim(self, clean_logits: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        require(
            target is None, "llcm picks the least-likely class itself; for a chosen target use fgsm"
        )
        return clean_logits.argmin(1)


@register_attack
class BIM(GradientAttack):
    """Basic iterative method / I-FGSM (Kurakin et al. 2017): ``steps`` sign steps of ``alpha``
    projected onto the Linf ball of radius ``eps``."""

    name = "bim"

    def __init__(
        self,
        eps: float = 4.0,
        alpha: float = 1.0,
        steps: int = 10,
        loss: str = "ce",
        **options: Any,
    ) -> None:
        super().__init__(eps, alpha, steps, loss=loss, **options)


@register_attack
class PGD(GradientAttack):
    """Projected gradient descent (Madry et al. 2018) from a random start in the ball,
    Linf (sign steps) or L2 (unit-L2 steps)."""

    name = "pgd"

    def __init__(
        self,
        eps: float = 4.0,
        alpha: float = 1.0,
        steps: int = 10,
        random_start: bool = True,
        norm: str = "linf",
        loss: str = "ce",
        **options: Any,
    ) -> None:
        super().__init__(
            eps, alpha, steps, norm=norm, random_start=random_start, loss=loss, **options
        )


@register_attack
class PGDL2(PGD):
    """PGD in the L2 ball; ``eps`` is the L2 norm of the whole patch in pixel units."""

    name = "pgd-l2"
    matrix = False  # an L2 budget: not a column of the Linf matrix

    def __init__(
        self,
        eps: float = 128.0,
        alpha: float = 16.0,
        steps: int = 10,
        random_start: bool = True,
        loss: str = "ce",
        **options: Any,
    ) -> None:
        super().__init__(eps, alpha, steps, random_start, "l2", loss, **options)


@register_attack
class MIFGSM(GradientAttack):
    """Momentum iterative FGSM (Dong et al. 2018, eq. 6-7): g <- mu g + grad / ||grad||_1,
    x <- x + alpha sign(g)."""

    name = "mifgsm"

    def __init__(
        self,
        eps: float = 4.0,
        alpha: float = 1.0,
        steps: int = 10,
        mu: float = 1.0,
        loss: str = "ce",
        **options: Any,
    ) -> None:
        super().__init__(eps, alpha, steps, mu=mu, loss=loss, **options)


@register_attack
class TIMIFGSM(MIFGSM):
    """Translation-invariant MI-FGSM (Dong et al. 2019, eq. 8): the gradient is convolved with
    a Gaussian kernel (depthwise, any channel count) before momentum. Defaults are SPOC's
    baseline (eps 8, alpha 0.4, 40 steps); ``sigma`` defaults to (kernel_size - 1) / 6, so the
    kernel spans +-3 sigma as in Dong et al.'s code."""

    name = "timifgsm"

    def __init__(
        self,
        eps: float = 8.0,
        alpha: float = 0.4,
        steps: int = 40,
        mu: float = 1.0,
        kernel_size: int = 15,
        sigma: float | None = None,
        loss: str = "ce",
        **options: Any,
    ) -> None:
        super().__init__(eps, alpha, steps, mu, loss, **options)
        require(int(kernel_size) >= 1, f"timifgsm: kernel_size={kernel_size} must be >= 1")
        sigma = (int(kernel_size) - 1) / 6 if sigma is None else float(sigma)
        require(
            sigma > 0, f"timifgsm: sigma={sigma} must be > 0 (use kernel_size >= 2 or give sigma)"
        )
        self.kernel = gaussian_kernel(int(kernel_size), sigma)

    def transform_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        return depthwise_smooth(grad, self.kernel)


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """Normalised 2-D Gaussian (size, size), centred; sigma in pixels."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    k = torch.outer(g, g)
    return (k / k.sum()).float()


def depthwise_smooth(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of (N, C, H, W) with the same 2-D kernel, zero 'same' padding."""
    c = x.shape[1]
    weight = kernel.to(x).expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, padding="same", groups=c)
