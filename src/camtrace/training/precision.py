"""Mixed precision and memory format, chosen per device by measurement, not by habit.

On CUDA, bf16 autocast where the GPU supports it, else fp16 with a gradient scaler. On CPU,
bf16 autocast only where this CPU really is faster in bf16 (AVX512-BF16 / AMX): on an
AVX2-only CPU oneDNN's bf16 matmul runs ~500x slower than fp32, so fp32 is kept there.
``auto`` also keeps fp32 for an architecture whose spec says mixed precision loses accuracy
(``ModelSpec.mixed_precision``, measured by benchmarks/mixed_precision.py).

:func:`environment` records the arithmetic that made a number (precision, processor, ISA,
threads) for checkpoint cards and metrics.json alike.
"""

from __future__ import annotations

import contextlib
import functools
import math
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from camtrace.models.spec import ModelSpec

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@functools.cache
def cpu_bf16_speedup(n: int = 512, reps: int = 5) -> float:
    """Measured bf16/fp32 matmul throughput ratio on this CPU (a ~50 ms probe; the best of
    ``reps`` timings per dtype, since one timing on a busy machine can be off by 3x)."""

    def rate(dtype: torch.dtype) -> float:
        a = torch.randn(n, n, dtype=dtype)
        a @ a
        best = math.inf
        for _ in range(reps):
            t = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - t)
        return 1.0 / max(best, 1e-9)

    return rate(torch.bfloat16) / rate(torch.float32)


def resolve_precision(precision: str, device: torch.device, spec: ModelSpec | None = None) -> str:
    """Turn ``auto`` into the fastest precision that keeps accuracy on ``device`` (fp32 for an
    architecture whose ``spec`` is not mixed-precision safe)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision != "auto":
        return precision
    if spec is not None and not spec.mixed_precision:
        return "fp32"
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


@functools.cache
def cpu_model_and_isa() -> tuple[str, str]:
    """This CPU's model name and its widest matrix ISA: AMX, AVX512-BF16, AVX512, AVX2, or
    torch's own capability string where /proc/cpuinfo is missing (macOS, Windows)."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.is_file() else ""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in pairs}
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    for flag, isa in (
        ("amx_bf16", "AMX"),
        ("avx512_bf16", "AVX512-BF16"),
        ("avx512f", "AVX512"),
        ("avx2", "AVX2"),
    ):
        if flag in flags:
            return name, isa
    return name, torch.backends.cpu.get_cpu_capability()


def environment(device: torch.device, precision: str | dict[str, str]) -> dict[str, Any]:
    """What made a number: precision (resolved, or one per detector), processor, ISA, threads,
    versions. Written into every checkpoint card and into metrics.json."""
    name, isa = cpu_model_and_isa()
    return {
        "precision": precision,
        "device": device.type,
        "processor": torch.cuda.get_device_name(device) if device.type == "cuda" else name,
        "isa": "CUDA" if device.type == "cuda" else isa,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
