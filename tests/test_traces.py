"""Trace statistics on synthetic images whose true values are known."""

from __future__ import annotations

import numpy as np
import pytest

from camtrace.data.codec import ijg_tables
from camtrace.errors import CamtraceError
from camtrace.evaluation.traces import cfa_trace_ratio, jpeg_quality_estimate, noise_sigma


def _grey(plane: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(np.rint(plane), 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.mark.parametrize("sigma", [2.0, 5.0])
def test_noise_sigma_recovers_gaussian_noise_on_a_flat_image(sigma: float) -> None:
    rng = np.random.default_rng(0)
    image = _grey(128 + sigma * rng.standard_normal((256, 256)))
    # Rounding to 8 bits adds uniform noise of variance 1/12; the estimate is within 10%.
    assert noise_sigma(image) == pytest.approx(np.hypot(sigma, np.sqrt(1 / 12)), rel=0.1)


def test_noise_sigma_ignores_a_linear_ramp() -> None:
    y, x = np.indices((64, 64))
    assert noise_sigma(_grey(50 + x + 2 * y)) == pytest.approx(0.0, abs=1e-9)


def test_cfa_trace_finds_the_interpolated_green_lattice() -> None:
    rng = np.random.default_rng(1)
    green = 60 + 120 * rng.random((128, 128))
    y, x = np.indices(green.shape)
    neighbours = sum(np.roll(green, s, axis=a) for s in (1, -1) for a in (0, 1)) / 4
    bayer = np.where((y + x) % 2 == 1, neighbours, green)  # odd lattice bilinearly filled
    trace = cfa_trace_ratio(_grey(bayer))
    assert trace.ratio > 1.5 and trace.lattice == "even"


def test_cfa_trace_of_iid_noise_is_one() -> None:
    image = np.random.default_rng(2).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert cfa_trace_ratio(image).ratio == pytest.approx(1.0, abs=0.05)
    assert cfa_trace_ratio(np.full((8, 8, 3), 90, np.uint8)).ratio == 1.0


def test_jpeg_quality_estimate_recovers_ijg_qualities() -> None:
    assert [jpeg_quality_estimate(ijg_tables(q)[0]) for q in range(50, 101)] == list(range(50, 101))
    with pytest.raises(CamtraceError, match="64 luma"):
        jpeg_quality_estimate([1] * 10)


def test_traces_refuse_non_uint8_images() -> None:
    with pytest.raises(CamtraceError, match="uint8"):
        noise_sigma(np.zeros((8, 8, 3), np.float32))
