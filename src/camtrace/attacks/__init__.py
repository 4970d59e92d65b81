"""Adversarial attacks on camera-model detectors: ``attack(detector, images_uint8, target=None)``.

Every attack returns uint8 images and an :class:`AttackInfo` whose success is measured on
those uint8 images (and after JPEG when asked). Build one by name with :func:`make_attack`.
"""

from __future__ import annotations

import inspect
from typing import Any

from camtrace.attacks.base import Attack, AttackInfo, GradientAttack, as_pixel_eps
from camtrace.attacks.gradient import BIM, FGSM, LLCM, MIFGSM, PGD, PGDL2, TIMIFGSM
from camtrace.attacks.jpeg import Jpeg, recompress
from camtrace.attacks.jsma import JSMA
from camtrace.errors import CamtraceError

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (FGSM, LLCM, BIM, PGD, PGDL2, MIFGSM, TIMIFGSM, JSMA)
}


def make_attack(name: str, **kwargs: Any) -> Attack:
    """Build the attack registered as ``name`` with its keyword parameters."""
    cls = ATTACKS.get(name.lower())
    if cls is None:
        raise CamtraceError(f"unknown attack '{name}'; choose one of: {', '.join(ATTACKS)}")
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(kwargs) - set(params) - {"self"})
    if unknown:
        accepted = ", ".join(p for p in params if p != "self")
        raise CamtraceError(
            f"attack '{name}' has no parameter {', '.join(unknown)}; it takes: {accepted}"
        )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CamtraceError(f"attack '{name}': bad parameter value ({exc})") from None


__all__ = [
    "ATTACKS",
    "BIM",
    "FGSM",
    "JSMA",
    "LLCM",
    "MIFGSM",
    "PGD",
    "PGDL2",
    "TIMIFGSM",
    "Attack",
    "AttackInfo",
    "GradientAttack",
    "Jpeg",
    "as_pixel_eps",
    "make_attack",
    "recompress",
]
