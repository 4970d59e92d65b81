"""The detector contract shared by every camera-model identifier.

``forward`` takes float pixels in [0, 255], shape (N, 3, H, W), and returns logits; each
detector normalises inside itself (``preprocess``), so no attack needs to know a mean or a
scale. ``embed`` gives the features a SVM or a triplet loss uses.

Residuals in fp32 (docs/architecture.md, "Detector"): the input scaling (``preprocess``) and
every layer that extracts a noise residual run through :func:`in_fp32`. Under bf16 autocast
(8 significant bits) the taps of Tuama's zero-sum KV filter sum to 6e-3 instead of 0, which
leaks about one grey level of a pixel of 200 into a residual whose spread is 4 grey levels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:  # the registry attaches the spec (registry.py imports this module)
    from camtrace.models.spec import ModelSpec


def in_fp32(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` on fp32 ``x`` with autocast off: the camera's traces are a few grey levels on
    pixel values of hundreds, about bf16's resolution there (see the module docstring)."""
    with torch.autocast(x.device.type, enabled=False):
        return fn(x.float())


class Detector(nn.Module):
    """Base class: subclasses implement ``preprocess``, ``features``, ``head`` and register
    with their :class:`~camtrace.models.spec.ModelSpec` (``@register(ModelSpec(...))``).

    ``hparams`` are the constructor keywords beyond ``classes`` and ``patch_size``; they are
    stored in the checkpoint card so :func:`camtrace.models.build` can rebuild the network.
    """

    spec: ClassVar[ModelSpec]

    def __init__(self, classes: list[str], patch_size: int | None = None, **hparams: Any) -> None:
        super().__init__()
        if len(classes) < 2:
            raise ValueError("a detector needs at least two camera models")
        self.classes = list(classes)
        self.patch_size = int(patch_size or self.spec.patch_size)
        self.spec.check_patch_size(self.patch_size)
        self.hparams = dict(hparams)

    @property
    def arch(self) -> str:
        return self.spec.name

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Map [0, 255] pixels to the network's input domain (identity by default)."""
        return x

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """Network body on preprocessed input -> embedding (N, D)."""
        raise NotImplementedError

    def head(self, e: torch.Tensor) -> torch.Tensor:
        """Embedding -> logits (N, num_classes)."""
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features of [0, 255] pixels: the vector the SVM (Bondi) or triplet loss uses.

        ``preprocess`` runs in fp32 even under autocast (:func:`in_fp32`)."""
        return self.features(in_fp32(self.preprocess, x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def identify(self, image: Any, k: int | None = None, open_set: bool = True) -> Any:
        """Camera model of an image (path or (H, W, 3) uint8) by majority vote over patches;
        open set as ``camtrace identify`` (``open_set=False``: closed set): "unknown" when the
        calibration beside the checkpoint rejects the evidence. Without a calibration, or
        with a ``k`` other than the one it was made at, the answer is closed-set and the
        result's ``warnings`` say why."""
        from camtrace.models.inference import identify
        from camtrace.models.openset import detector_openset

        openset = detector_openset(self) if open_set else None
        if (
            openset is not None
            and not isinstance(openset, str)
            and k not in (None, openset.patches)
        ):
            openset = (
                f"open set calibrated at {openset.patches} voting patches, not k = {k}: "
                "answered closed-set"
            )
        if not isinstance(openset, str):
            return identify(self, image, k=k, openset=openset)
        result = identify(self, image, k=k)
        result.warnings.append(openset)
        return result

    def fit_preprocessing(self, patches_uint8: torch.Tensor) -> None:
        """Set data-dependent preprocessing from training patches (N, H, W, 3) uint8."""

    def project_constraints(self) -> None:
        """Re-apply constraints that are part of the model after every optimiser step."""
