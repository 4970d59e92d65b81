"""The options every attack shares, validated once (docs/architecture.md, "Attack call").

An attack's constructor lists only its paper parameters (as torchattacks' ``PGD(eps, alpha,
steps, random_start)``); everything about how it runs (the 8-bit grid, early stop, the JPEG it
is judged after, batching, arithmetic, randomness) is one frozen :class:`AttackOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from camtrace.data.codec import Jpeg, as_jpeg
from camtrace.errors import CamtraceError
from camtrace.hardware import ATTACK_PRECISIONS

PRECISIONS = ATTACK_PRECISIONS  # the values the option takes (hardware: the one list)


@dataclass(frozen=True)
class AttackOptions:
    """How an attack runs, whatever its paper parameters.

    ``quantize``: the model sees 8-bit iterates and uint8 images come back (False: the float
    variant, to compare with torchattacks). ``early_stop``: a sample stops at its first
    success. ``jpeg`` (a quality or a :class:`Jpeg`): success also needs the JPEG
    re-compression to keep it; ``through_jpeg``: the gradient also goes through a
    differentiable copy of that JPEG. ``batch_size``: patches per forward. ``progress``: a
    progress bar. ``precision``: the arithmetic of the gradient passes, "fp32", "bf16"
    (autocast) or "auto" (bf16 where it measures faster on this processor and detector);
    success is always judged in fp32. ``seed``: the random start (None: torch's global
    generator).
    """

    quantize: bool = True
    early_stop: bool = True
    jpeg: Jpeg | None = None
    through_jpeg: bool = False
    batch_size: int = 128
    progress: bool = False
    precision: str = "auto"
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "jpeg", as_jpeg(self.jpeg))
        for flag in ("quantize", "early_stop", "through_jpeg", "progress"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                _fail(flag, getattr(self, flag), "true or false")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            _fail("batch_size", self.batch_size, "an integer >= 1")
        if self.precision not in PRECISIONS:
            _fail("precision", self.precision, " or ".join(PRECISIONS))
        if self.seed is not None and not _is_int(self.seed):
            _fail("seed", self.seed, "an integer or None")
        if self.through_jpeg and self.jpeg is None:
            raise CamtraceError(
                "attack option through_jpeg needs the compression to go through: give jpeg="
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _fail(option: str, value: Any, allowed: str) -> None:
    raise CamtraceError(f"attack option {option}={value!r}: use {allowed}")


OPTIONS = tuple(f.name for f in fields(AttackOptions))
DEFAULTS = AttackOptions()


def configure(
    name: str, base: AttackOptions | None, changes: dict[str, Any], inapplicable: dict[str, str]
) -> AttackOptions:
    """``base`` (default: all defaults) with ``changes``, checked against what attack ``name``
    can use: ``inapplicable`` maps an option to why it means nothing for this attack."""
    unknown = sorted(set(changes) - set(OPTIONS))
    if unknown:
        raise CamtraceError(
            f"{name}: no option {', '.join(unknown)}; the options are: {', '.join(OPTIONS)}"
        )
    if base is not None and not isinstance(base, AttackOptions):
        raise CamtraceError(f"{name}: options= must be an AttackOptions, got {type(base).__name__}")
    options = replace(base or DEFAULTS, **changes)
    for option, why in inapplicable.items():
        if getattr(options, option) != getattr(DEFAULTS, option):
            raise CamtraceError(f"{name}: option {option} does not apply ({why})")
    return options
