"""The processor a number was computed on, whether it has a fast bf16 path, the precision
policy training, generators and attacks share (the allowed values, the resolver of ``auto``,
whether a model's spec allows bf16, the autocast context), and the environment record
(`environment`) that checkpoint cards and metrics.json carry.

One answer for training and attacks alike (docs/architecture.md, layer 0): on an AVX2-only
CPU oneDNN's bf16 matmul runs hundreds of times slower than fp32, on AVX512-BF16/AMX CPUs and
recent GPUs it is 2-3x faster, so bf16 is used only where a measurement says it is faster.
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

MIN_BF16_SPEEDUP = 1.3  # bf16 must beat fp32 by this factor to be worth its rounding
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # training's; an attack's gradient: no fp16
ATTACK_PRECISIONS = PRECISIONS[:3]
BF16_ISAS = ("AVX512-BF16", "AMX")  # CPUs with bf16 instructions (cpu_model_and_isa)
# Samples per forward/backward pass of an attack on a CPU: 32 64-px patches keep a detector's
# activations in cache, a gradient pass 14-17% faster than at 128 on a 2-core EPYC with AVX2
# and AVX512 kernels alike (docs/benchmarks.md). A GPU takes the whole batch in one pass.
ATTACK_PASS = {"cpu": 32}


def attack_pass(device: torch.device) -> int | None:
    """Samples per attack pass on ``device`` (:data:`ATTACK_PASS`; None: the whole batch)."""
    return ATTACK_PASS.get(device.type)


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


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 is worth using on ``device``: a CUDA GPU that supports it, or a CPU with
    bf16 instructions (:data:`BF16_ISAS`) whose measured bf16/fp32 matmul ratio exceeds
    :data:`MIN_BF16_SPEEDUP`."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or cpu_model_and_isa()[1] not in BF16_ISAS:
        return False  # bf16 emulated in software: not worth the seconds its timing would take
    return cpu_bf16_speedup() > MIN_BF16_SPEEDUP


def environment(device: torch.device, precision: str | dict[str, str]) -> dict[str, Any]:
    """What made a number: precision (resolved, or one per detector), processor, ISA, threads,
    versions. Written into every checkpoint card (detectors and generators) and into
    metrics.json."""
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


def resolve_precision(
    precision: str, device: torch.device, mixed_precision: bool = True, fp16: bool = True
) -> str:
    """Turn ``auto`` into the fastest precision that keeps accuracy on ``device``: fp32 where
    ``mixed_precision`` is false (an architecture whose spec is not mixed-precision safe) or
    bf16 is slow (:func:`fast_bf16`), else bf16; on a GPU without bf16, fp16 where the caller
    scales its gradients (``fp16``), fp32 otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision != "auto":
        return precision
    if not mixed_precision:
        return "fp32"
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "fp16" if fp16 else "fp32"
    return "bf16" if fast_bf16(device) else "fp32"


def allows_mixed_precision(model: torch.nn.Module) -> bool:
    """Whether ``model``'s spec (``ModelSpec.mixed_precision``, measured per architecture)
    lets ``precision: auto`` choose bf16 for it; a module without a spec may."""
    return bool(getattr(getattr(model, "spec", None), "mixed_precision", True))


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """Autocast context for a resolved precision ("fp32": none; "bf16"; "fp16")."""
    if precision == "fp32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device.type, dtype=dtype):
        yield
