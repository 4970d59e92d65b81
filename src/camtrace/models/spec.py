"""What a detector architecture needs from the data, declared once with its class.

Like timm's pretrained config that travels with a registered model, a :class:`ModelSpec` is
passed to :func:`camtrace.models.registry.register` beside the class, and every other module
(patch extraction, training, SVMs, inference, mixed precision, ``camtrace models``) reads it
from there instead of keeping its own table.
"""

from __future__ import annotations

from dataclasses import dataclass

from camtrace.data.patches import PROTOCOLS
from camtrace.errors import CamtraceError


@dataclass(frozen=True)
class ModelSpec:
    """The data needs and numeric habits of one architecture.

    ``patch_size``: the native patch side of the paper; ``min_patch_size``: the smallest side the
    network runs on; ``protocol``: the patch protocol it is trained and votes with
    (:data:`camtrace.data.patches.PROTOCOLS`); ``svm``: Bondi's one-vs-one SVMs classify its
    features; ``mixed_precision``: bf16 autocast training reaches the fp32 single-patch
    accuracy within 2 points, both on ``benchmarks/mixed_precision.py``'s small task and on
    the built-in config that trains the architecture (``precision: auto`` keeps fp32
    otherwise; an architecture not checked yet says False); ``handcrafted``: its features
    are a fixed formula, not a network (Marra 2017's SPAM): training fits only the SVMs, and
    without a gradient the gradient attacks refuse it.
    """

    name: str
    paper: str
    patch_size: int
    min_patch_size: int
    protocol: str
    svm: bool = False
    mixed_precision: bool = True
    handcrafted: bool = False

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise CamtraceError(
                f"model spec {self.name}: protocol {self.protocol!r} is not one of "
                f"{sorted(PROTOCOLS)}"
            )
        if not 0 < self.min_patch_size <= self.patch_size:
            raise CamtraceError(
                f"model spec {self.name}: min_patch_size {self.min_patch_size} must be in "
                f"1..patch_size ({self.patch_size})"
            )

    def check_patch_size(self, size: int) -> None:
        """Refuse a patch the network cannot run on, naming the smallest one it can."""
        if size < self.min_patch_size:
            raise CamtraceError(
                f"patch size {size} is too small for {self.name} (needs >= "
                f"{self.min_patch_size} px); cut patches of {self.min_patch_size} px or more "
                "(camtrace patches --size, or patches: {size: ...} in a config)"
            )
