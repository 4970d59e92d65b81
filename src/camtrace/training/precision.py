"""Mixed precision and memory format, chosen per device by measurement, not by habit.

On CUDA, bf16 autocast where the GPU supports it, else fp16 with a gradient scaler. On CPU,
bf16 autocast only where this CPU really is faster in bf16 (AVX512-BF16 / AMX): on an
AVX2-only CPU oneDNN's bf16 matmul runs ~500x slower than fp32, so fp32 is kept there.
``auto`` also keeps fp32 for an architecture whose spec says mixed precision loses accuracy
(``ModelSpec.mixed_precision``, measured by benchmarks/mixed_precision.py).

:func:`environment` (from :mod:`camtrace.hardware`, so attacks' generator cards use it too)
records the arithmetic that made a number (precision, processor, ISA, threads) for checkpoint
cards and metrics.json alike.
"""

from __future__ import annotations

import torch

from camtrace import hardware
from camtrace.hardware import autocast as autocast  # re-exported: the engine's
from camtrace.hardware import environment as environment  # re-exported: cards, metrics.json
from camtrace.models.spec import ModelSpec


def resolve_precision(precision: str, device: torch.device, spec: ModelSpec | None = None) -> str:
    """Turn ``auto`` into the fastest precision that keeps accuracy on ``device`` (fp32 for an
    architecture whose ``spec`` is not mixed-precision safe; :func:`hardware.resolve_precision`)."""
    return hardware.resolve_precision(precision, device, spec is None or spec.mixed_precision)


def to_device_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """NCHW tensor in the memory format the model was converted to."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
