"""The generative methods by name: which generator, whether a discriminator, which optimiser.

Chen et al. 2019 Sec. 4.1 train MISLGAN with TensorFlow's default Adam (beta 0.9, 0.999) at
learning rate 1e-4; Adv-Cam-Id is the same without the discriminator (SpoC supplement Sec. C:
"the hyperparameters suggested by the authors"). GAP: Adam at 2e-4 with beta1 0.5; neither
Poursaeed et al. 2018 nor SpoC states it in the text, so we take the values of the image-to-image
ResNet generators GAP builds on (Johnson et al. 2016 / pix2pix training defaults). SpoC
(Cozzolino et al. 2021 Sec. 5): Adam at 1e-4, betas (0.5, 0.999); it trains against no
detector, so :func:`train_spoc`, not :func:`train_generator`, trains it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from camtrace.attacks.generative.gap import GAPGenerator
from camtrace.attacks.generative.mislgan import MISLGANGenerator
from camtrace.attacks.generative.spoc import SpoCGenerator
from camtrace.errors import CamtraceError
from camtrace.registry import Registry

CHEN = (0.9, 0.999)  # TensorFlow's default Adam betas


@dataclass(frozen=True)
class Method:
    """How one generative attack is built and trained: ``discriminator`` (Chen's D and its
    L_a), ``perceptual`` (Chen's L1 term L_p; GAP bounds the distortion by its budget
    instead), the validation PSNR its training must reach by default (``stop_psnr``: 40 dB
    against Chen's reported 42.7 dB and more; none for GAP) and its Adam settings."""

    name: str
    paper: str
    generator: Callable[..., nn.Module]
    discriminator: bool
    perceptual: bool
    stop_psnr: float
    lr: float
    betas: tuple[float, float]
    detector: bool = True

    def build(self, hparams: dict[str, Any] | None = None) -> nn.Module:
        """A fresh generator with the given hyper-parameters (its defaults otherwise)."""
        try:
            return self.generator(**(hparams or {}))
        except (TypeError, ValueError) as exc:
            raise CamtraceError(f"{self.name} generator: bad hyper-parameter ({exc})") from None


METHODS: Registry[Method] = Registry("generative method")
"""The generative methods by name (``get_method``; a new one: ``METHODS.add(name, method)``)."""
for _method in (
    Method("mislgan", "Chen et al. 2019", MISLGANGenerator, True, True, 40.0, 1e-4, CHEN),
    Method("advcamid", "Chen 2019 without D", MISLGANGenerator, False, True, 40.0, 1e-4, CHEN),
    Method("gap", "Poursaeed et al. 2018", GAPGenerator, False, False, 0.0, 2e-4, (0.5, 0.999)),
    Method(
        "spoc",
        "Cozzolino et al. 2021",
        SpoCGenerator,
        True,
        True,
        0.0,
        1e-4,
        (0.5, 0.999),
        False,
    ),
):
    METHODS.add(_method.name, _method)


def get_method(name: str) -> Method:
    """The method registered as ``name`` (a one-line error lists the choices)."""
    return METHODS.get(str(name))
