"""Registry of detector architectures: ``camtrace train --arch NAME`` looks names up here.

Each class registers with its :class:`~camtrace.models.spec.ModelSpec`, the one place that
says what the architecture needs (native patch, protocol, SVMs, mixed precision).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from camtrace.errors import CamtraceError
from camtrace.models.base import Detector
from camtrace.models.spec import ModelSpec

_REGISTRY: dict[str, type[Detector]] = {}


def register(spec: ModelSpec) -> Callable[[type[Detector]], type[Detector]]:
    """Class decorator: attach ``spec`` to the class and make it buildable by ``spec.name``."""

    def add(cls: type[Detector]) -> type[Detector]:
        cls.spec = spec
        _REGISTRY[spec.name.lower()] = cls
        return cls

    return add


def architectures() -> list[str]:
    return sorted(_REGISTRY)


def detector_class(arch: str) -> type[Detector]:
    try:
        return _REGISTRY[arch.lower()]
    except KeyError:
        raise CamtraceError(
            f"unknown architecture '{arch}'; choose one of: {', '.join(architectures())}"
        ) from None


def model_spec(arch: str) -> ModelSpec:
    """The spec of a registered architecture (unknown names give the list of choices)."""
    return detector_class(arch).spec


def build(arch: str, classes: list[str], patch_size: int | None = None, **hparams: Any) -> Detector:
    """Instantiate a detector by architecture name."""
    return detector_class(arch)(classes, patch_size, **hparams)
