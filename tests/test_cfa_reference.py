"""What classical demosaicers rebuild after MISLGAN's synthetic CFA block
(camtrace.evaluation.cfa_reference), checked on images whose answer is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from camtrace.data.simcam.sensor import cfa_channels
from camtrace.errors import CamtraceError
from camtrace.evaluation.cfa_reference import DEMOSAICERS, remosaic, remosaic_psnr


@pytest.mark.parametrize("algorithm", list(DEMOSAICERS))
@pytest.mark.parametrize("pattern", ["RGGB", "GBRG"])
def test_a_flat_colour_comes_back_exactly(algorithm: str, pattern: str) -> None:
    """A flat colour has no detail to lose: every demosaicer must give it back, red, green
    and blue in place (a demosaicer reading the tile with R and B swapped fails here)."""
    x = np.empty((2, 12, 16, 3), np.uint8)
    x[...] = (200, 120, 40)
    np.testing.assert_array_equal(remosaic(x, pattern, algorithm), x)


def test_bilinear_rebuilds_linear_ramps_exactly_inside_the_border() -> None:
    """Bilinear interpolation is exact on a linear function: three different ramps (red
    along the rows, green along the columns, blue on both) come back exactly away from the
    2-px border, where the reflected margin bends the ramp."""
    r, c = np.mgrid[0:20, 0:24]
    x = np.stack([10 + 4 * c, 200 - 6 * r, 30 + 2 * r + 4 * c], -1).astype(np.uint8)[None]
    y = remosaic(x, "RGGB", "bilinear")
    np.testing.assert_array_equal(y[:, 2:-2, 2:-2], x[:, 2:-2, 2:-2])


@pytest.mark.parametrize("algorithm", list(DEMOSAICERS))
def test_the_result_depends_on_the_mosaic_alone(algorithm: str) -> None:
    """The reflected margin must add no sample the mosaic lacks: changing every colour the
    CFA does not sample leaves the rebuilt image unchanged."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    sampled = np.zeros((16, 16, 3), bool)
    tile = cfa_channels("RGGB")
    for dy in range(2):
        for dx in range(2):
            sampled[dy::2, dx::2, tile[dy, dx]] = True
    other = np.where(sampled, x, rng.integers(0, 256, x.shape, dtype=np.uint8))
    np.testing.assert_array_equal(
        remosaic(other, "RGGB", algorithm), remosaic(x, "RGGB", algorithm)
    )


def test_psnr_is_the_mean_over_the_images_it_changed() -> None:
    """One flat image (rebuilt exactly, infinite PSNR) and one noisy image: the mean is the
    noisy image's PSNR, as a generator's m-PSNR leaves unchanged patches out."""
    rng = np.random.default_rng(1)
    x = np.stack([np.full((16, 16, 3), 90, np.uint8), rng.integers(0, 256, (16, 16, 3), np.uint8)])
    y = remosaic(x[1:], "RGGB", "bilinear").astype(np.float64)
    mse = np.mean((y - x[1:].astype(np.float64)) ** 2)
    got = remosaic_psnr(x, algorithms=["bilinear"])["bilinear"]
    assert got == pytest.approx(10 * np.log10(255**2 / mse), rel=1e-9)


def test_bad_input_gets_a_one_line_error() -> None:
    with pytest.raises(CamtraceError, match="demosaicer 'ahd'"):
        remosaic(np.zeros((1, 4, 4, 3), np.uint8), "RGGB", "ahd")
    with pytest.raises(CamtraceError, match="uint8 images"):
        remosaic(np.zeros((1, 4, 4, 3), np.float32), "RGGB", "bilinear")
