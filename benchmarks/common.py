"""Shared benchmark helpers: the machine's measured matmul peak and FLOP counting."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 5) -> float:
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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_of(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (forward and any backward inside it)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


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
