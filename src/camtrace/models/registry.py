"""Registry of detector architectures: ``camtrace train --arch NAME`` looks names up here."""

from __future__ import annotations

from typing import Any

from camtrace.errors import CamtraceError
from camtrace.models.base import Detector

_REGISTRY: dict[str, type[Detector]] = {}


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: make ``cls`` buildable by its ``arch`` name."""
    _REGISTRY[cls.arch.lower()] = cls
    return cls


def architectures() -> list[str]:
    return sorted(c.arch for c in _REGISTRY.values())


def detector_class(arch: str) -> type[Detector]:
    try:
        return _REGISTRY[arch.lower()]
    except KeyError:
        raise CamtraceError(
            f"unknown architecture '{arch}'; choose one of: {', '.join(architectures())}"
        ) from None


def build(arch: str, classes: list[str], patch_size: int | None = None, **hparams: Any) -> Detector:
    """Instantiate a detector by architecture name."""
    return detector_class(arch)(classes, patch_size, **hparams)
