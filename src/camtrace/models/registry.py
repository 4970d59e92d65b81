"""Registry of detector architectures: ``camtrace train --arch NAME`` looks names up here.

Each class registers with its :class:`~camtrace.models.spec.ModelSpec`, the one place that
says what the architecture needs (native patch, protocol, SVMs, mixed precision).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from camtrace.models.base import Detector
from camtrace.models.spec import ModelSpec
from camtrace.registry import Registry

ARCHITECTURES: Registry[type[Detector]] = Registry("architecture")


def register(spec: ModelSpec) -> Callable[[type[Detector]], type[Detector]]:
    """Class decorator: attach ``spec`` to the class and make it buildable by ``spec.name``."""

    def add(cls: type[Detector]) -> type[Detector]:
        cls.spec = spec
        return ARCHITECTURES.add(spec.name, cls)

    return add


def architectures() -> list[str]:
    return sorted(ARCHITECTURES)


def detector_class(arch: str) -> type[Detector]:
    return ARCHITECTURES.get(arch)


def model_spec(arch: str) -> ModelSpec:
    """The spec of a registered architecture (unknown names give the list of choices)."""
    return detector_class(arch).spec


def build(arch: str, classes: list[str], patch_size: int | None = None, **hparams: Any) -> Detector:
    """Instantiate a detector by architecture name."""
    return detector_class(arch)(classes, patch_size, **hparams)
