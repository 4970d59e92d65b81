"""Adversarial attacks on camera-model detectors: ``attack(detector, images_uint8, target=None)``.

Every attack returns uint8 images and an :class:`AttackInfo` whose success is measured on
those uint8 images (and after JPEG when asked); ``square`` queries forward passes only.
Build one by name with :func:`make_attack` (the registry :data:`ATTACKS`: a new attack is a
subclass of :class:`Attack` decorated with ``@register_attack``); the options every attack
shares are one
:class:`AttackOptions`. Generative attacks ("mislgan", "advcamid", "gap", "spoc") take a
trained generator: ``make_attack("mislgan", generator="gen.safetensors")`` (training:
:func:`camtrace.attacks.generative.train_generator`, SpoC's ``train_spoc``).
"""

from __future__ import annotations

import inspect
from typing import Any

# the attacks register in the order they are imported, the order of every list of them
from camtrace.attacks.base import ATTACKS, Attack, AttackInfo, GradientAttack, matrix_attacks
from camtrace.attacks.gradient import BIM, FGSM, LLCM, MIFGSM, PGD, PGDL2, TIMIFGSM

# isort: split
from camtrace.attacks.jsma import JSMA

# isort: split
from camtrace.attacks.square import Square

# isort: split
from camtrace.attacks.noise import RandomSign, RandomSignLuma

# isort: split
from camtrace.attacks.generative import AdvCamIdAttack, GAPAttack, MISLGANAttack, SpoCAttack

# isort: split
from camtrace.attacks.grid import as_pixel_eps
from camtrace.attacks.options import OPTIONS, AttackOptions
from camtrace.data.codec import Jpeg, recompress
from camtrace.errors import CamtraceError


def make_attack(name: str, **kwargs: Any) -> Attack:
    """Build the attack registered as ``name`` from its paper parameters and any of the
    shared options (:class:`AttackOptions`, as keywords or ``options=``)."""
    cls = ATTACKS.get(name)
    params = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind is not p.VAR_KEYWORD
    ]
    options = [o for o in OPTIONS if o not in cls.inapplicable]
    unknown = sorted(set(kwargs) - {*params, *options, "options"})
    if unknown:
        raise CamtraceError(
            f"attack '{name}' has no parameter {', '.join(unknown)}; its parameters: "
            f"{', '.join(params)}; options: {', '.join(options)}"
        )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CamtraceError(f"attack '{name}': bad parameter value ({exc})") from None


__all__ = [
    "ATTACKS",
    "AdvCamIdAttack",
    "BIM",
    "GAPAttack",
    "FGSM",
    "JSMA",
    "LLCM",
    "MIFGSM",
    "MISLGANAttack",
    "PGD",
    "PGDL2",
    "RandomSign",
    "RandomSignLuma",
    "SpoCAttack",
    "Square",
    "TIMIFGSM",
    "Attack",
    "AttackInfo",
    "AttackOptions",
    "GradientAttack",
    "Jpeg",
    "as_pixel_eps",
    "make_attack",
    "matrix_attacks",
    "recompress",
]
