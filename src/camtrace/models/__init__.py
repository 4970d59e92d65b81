"""Detectors (camera-model identifiers), their registry and checkpoints."""

from camtrace.models import (
    bondi2017,  # noqa: F401  (registers the architecture)
    densenet40,  # noqa: F401  (registers the architecture)
    marra2017,  # noqa: F401  (registers the architecture)
    mislnet,  # noqa: F401  (registers the architecture)
    spoofnet,  # noqa: F401  (registers the spoof detector's architecture)
    timm_detectors,  # noqa: F401  (registers xception, inceptionv3)
    tuama2016,  # noqa: F401  (registers the architecture)
    yang2018,  # noqa: F401  (registers the architecture)
    zhang2019,  # noqa: F401  (registers spec, the GAN-image detector)
)
from camtrace.models.base import Detector
from camtrace.models.checkpoint import load_detector, read_card, save_detector
from camtrace.models.registry import architectures, build, model_spec
from camtrace.models.spec import ModelSpec

__all__ = [
    "Detector",
    "ModelSpec",
    "architectures",
    "build",
    "load_detector",
    "model_spec",
    "read_card",
    "save_detector",
]
