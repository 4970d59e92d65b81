"""The zoo at a glance: each architecture's spec with its size and cost (``camtrace models``).

Parameters and GFLOPs are counted on the network built at its native patch size for
``classes`` camera models; FLOPs with ``torch.utils.flop_counter.FlopCounterMode`` on one
forward pass of one patch (a multiply-add counts 2), without the layers that mark their
matrix products as a way of computing, not arithmetic of the paper (``uncounted_flops``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from camtrace.models.registry import architectures, build
from camtrace.models.spec import ModelSpec


@dataclass(frozen=True)
class ModelSummary:
    spec: ModelSpec
    parameters: int
    gflops_per_patch: float


def summarize(arch: str, classes: int = 10) -> ModelSummary:
    """Spec, parameter count and forward GFLOPs per native-size patch of ``arch``."""
    torch.manual_seed(0)
    det = build(arch, [f"Model_{i}" for i in range(classes)]).eval()
    x = torch.zeros(1, 3, det.patch_size, det.patch_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        det(x)
    root = type(det).__name__
    per_module = counter.get_flop_counts()
    skipped = sum(
        sum(per_module.get(f"{root}.{name}", {}).values())
        for name, m in det.named_modules()
        if getattr(m, "uncounted_flops", False)
    )
    params = sum(p.numel() for p in det.parameters())
    return ModelSummary(det.spec, params, (counter.get_total_flops() - skipped) / 1e9)


def summarize_all(classes: int = 10) -> list[ModelSummary]:
    return [summarize(arch, classes) for arch in architectures()]
