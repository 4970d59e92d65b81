"""The arithmetic of an attack's gradient passes: fp32, or bf16 autocast where it is faster.

Only the gradient passes (the step direction) may run in bf16; success, the clean prediction
and the final verdict are always an fp32 forward (:meth:`AttackModel.judge`), so a reported
success never depends on bf16 rounding. ``precision="auto"`` picks bf16 by measurement, as
training's ``precision: auto`` does, but measuring the attack's own workload (one gradient
pass of this detector at this patch size), since the detector's fp32 residual layers and its
shape decide the gain, not the matmul alone. A processor that :func:`camtrace.hardware.fast_bf16`
rules out (AVX2-only CPUs, where oneDNN's bf16 runs ~500x slower; GPUs without bf16) keeps
fp32 without timing the detector.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from camtrace.attacks.options import AttackOptions
from camtrace.hardware import MIN_BF16_SPEEDUP, allows_mixed_precision, autocast, fast_bf16

_measured: dict[tuple, float] = {}


@dataclass(frozen=True)
class AttackModel:
    """The detector as an attack uses it: gradient passes in ``precision`` ("fp32" or
    "bf16"), judgement always in fp32 without a graph, both ``pass_size`` samples at a time
    (None: the whole batch; :func:`camtrace.hardware.attack_pass`); ``rng``: the call's
    random generator (the ``seed`` option; None: torch's global), drawn from by each batch in
    turn."""

    detector: nn.Module
    precision: str
    rng: torch.Generator | None = None
    pass_size: int | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a gradient pass, in the attack's precision."""
        with autocast(self.precision, x.device):
            return self.detector(x)

    def gradient(
        self,
        x: torch.Tensor,
        objective: Callable[[torch.Tensor, torch.Tensor, slice], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of ``x`` (detached) and the gradient with respect to ``x`` of
        ``objective(part, logits, rows)``, a sum over the samples ``rows`` of ``x``, taken
        one pass at a time: the pieces make the whole batch's gradient."""
        logits, grads = [], []
        for rows in self.passes(len(x)):
            part = x[rows].detach().requires_grad_(True)
            out = self(part)
            (grad,) = torch.autograd.grad(objective(part, out, rows), part)
            logits.append(out.detach())
            grads.append(grad)
        return torch.cat(logits), torch.cat(grads)

    def judge(self, x: torch.Tensor) -> torch.Tensor:
        """fp32 logits without a graph: what success is measured on (autocast off, also
        inside a caller's autocast region)."""
        with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
            return torch.cat([self.detector(x[rows]) for rows in self.passes(len(x))])

    def passes(self, n: int) -> list[slice]:
        """``n`` samples in the fewest passes of at most ``pass_size``, of near-equal sizes
        (35 samples: 18 + 17, not 32 + 3, whose 3-sample pass is the slowest per sample); no
        samples: one empty pass."""
        count = max(-(-n // self.pass_size), 1) if self.pass_size else 1
        bounds = [round(k * n / count) for k in range(count + 1)]
        return [slice(lo, hi) for lo, hi in zip(bounds, bounds[1:], strict=False)]


def resolve_precision(options: AttackOptions, detector: nn.Module, x: torch.Tensor) -> str:
    """The precision ("fp32" or "bf16") of ``options.precision`` on this detector and batch
    ``x``. "auto" is fp32 for the float variant (``quantize=False``, compared with
    torchattacks), for detectors that do not compute in float32 and for those whose spec
    keeps fp32 (``ModelSpec.mixed_precision``, as training's "auto" does)."""
    if options.precision != "auto":
        return options.precision
    if not options.quantize or x.dtype != torch.float32:
        return "fp32"
    if not allows_mixed_precision(detector):
        return "fp32"
    if not fast_bf16(x.device):
        return "fp32"
    if x.device.type == "cuda":
        return "bf16"
    key = (type(detector), tuple(x.shape[1:]), torch.get_num_threads())
    if key not in _measured:
        _measured[key] = bf16_speedup(detector, x[:8])
    return "bf16" if _measured[key] >= MIN_BF16_SPEEDUP else "fp32"


def bf16_speedup(detector: nn.Module, x: torch.Tensor) -> float:
    """fp32 time over bf16 time of one input-gradient pass of ``detector`` on ``x`` (best of
    two, after a warm-up that builds the kernels)."""

    def seconds(precision: str) -> float:
        model, best = AttackModel(detector, precision), math.inf
        for attempt in range(3):
            xq = x.detach().clone().requires_grad_(True)
            start = time.perf_counter()
            torch.autograd.grad(model(xq).float().sum(), xq)
            if attempt:
                best = min(best, time.perf_counter() - start)
        return best

    return seconds("fp32") / seconds("bf16")
