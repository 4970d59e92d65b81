"""Mixed precision and memory format, chosen per device by measurement, not by habit.

On CUDA, bf16 autocast where the GPU supports it, else fp16 with a gradient scaler. On CPU,
bf16 autocast only where this CPU really is faster in bf16 (AVX512-BF16 / AMX): on an
AVX2-only CPU oneDNN's bf16 matmul runs ~500x slower than fp32, so fp32 is kept there.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@functools.cache
def cpu_bf16_speedup(n: int = 512) -> float:
    """Measured bf16/fp32 matmul throughput ratio on this CPU (one ~50 ms probe)."""

    def rate(dtype: torch.dtype) -> float:
        a = torch.randn(n, n, dtype=dtype)
        a @ a
        t = time.perf_counter()
        a @ a
        return 1.0 / max(time.perf_counter() - t, 1e-9)

    return rate(torch.bfloat16) / rate(torch.float32)


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto`` into the fastest precision that keeps accuracy on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_bf16_speedup() > 1.3 else "fp32"


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast context for a resolved precision (no-op for fp32)."""
    if precision == "fp32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device.type, dtype=dtype):
        yield


def to_device_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """NCHW tensor in the memory format the model was converted to."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
