"""Shared benchmark helpers: the machine's measured matmul peak, the kernels' ISA and FLOP
counting."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


def matmul_peak(
    device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 5
) -> float:
    """Measured dense matmul FLOP/s on ``device`` (the 'peak' we report fractions of)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(reps + 1):
        sync(device)
        t = time.perf_counter()
        a @ a
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def kernels() -> str:
    """The ISA the kernels run: ATen's CPU capability and oneDNN's ISA cap (both lowered by
    ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` on an AVX512 machine, whose
    /proc/cpuinfo flags still say AVX512)."""
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "native")
    return f"kernels: ATen {torch.backends.cpu.get_cpu_capability()}, oneDNN {onednn}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _FlopCount(TorchDispatchMode):
    """Sums torch's own per-op FLOP formulas (``flop_registry``). Written here because
    ``FlopCounterMode`` tracks modules with backward hooks, which ``torch.autograd.grad``
    (every attack's gradient) refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


def flops_of(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (forward and any backward inside it)."""
    with _FlopCount() as counter:
        fn()
    return counter.total


def timed(fn: Callable[[], object], device: torch.device, warmup: int = 2, reps: int = 5) -> float:
    """Median seconds per call of ``fn``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]
