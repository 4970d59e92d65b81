"""Adversarial attacks on camera-model detectors: ``attack(detector, images_uint8, target=None)``.

Every attack returns uint8 images and an :class:`AttackInfo` whose success is measured on
those uint8 images (and after JPEG when asked); ``square`` queries forward passes only.
Build one by name with :func:`make_attack`; the options every attack shares are one
:class:`AttackOptions`. Generative attacks ("mislgan", "advcamid", "gap", "spoc") take a
trained generator: ``make_attack("mislgan", generator="gen.safetensors")`` (training:
:func:`camtrace.attacks.generative.train_generator`, SpoC's ``train_spoc``).
"""

from __future__ import annotations

import inspect
from typing import Any

from camtrace.attacks.base import Attack, AttackInfo, GradientAttack
from camtrace.attacks.generative import AdvCamIdAttack, GAPAttack, MISLGANAttack, SpoCAttack
from camtrace.attacks.gradient import BIM, FGSM, LLCM, MIFGSM, PGD, PGDL2, TIMIFGSM
from camtrace.attacks.grid import as_pixel_eps
from camtrace.attacks.jsma import JSMA
from camtrace.attacks.noise import RandomSign, RandomSignLuma
from camtrace.attacks.options import OPTIONS, AttackOptions
from camtrace.attacks.square import Square
from camtrace.data.codec import Jpeg, recompress
from camtrace.errors import CamtraceError

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls
    for cls in (FGSM, LLCM, BIM, PGD, PGDL2, MIFGSM, TIMIFGSM, JSMA, Square)
    + (RandomSign, RandomSignLuma)
    + (MISLGANAttack, AdvCamIdAttack, GAPAttack, SpoCAttack)
}


def make_attack(name: str, **kwargs: Any) -> Attack:
    """Build the attack registered as ``name`` from its paper parameters and any of the
    shared options (:class:`AttackOptions`, as keywords or ``options=``)."""
    cls = ATTACKS.get(name.lower())
    if cls is None:
        raise CamtraceError(f"unknown attack '{name}'; choose one of: {', '.join(ATTACKS)}")
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
    "recompress",
]
