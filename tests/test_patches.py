"""Patch protocols: exact quality scores, grids, Bondi / Güera / GAN selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from camtrace.data.patches import (
    MAX_SATURATED_FRACTION,
    PROTOCOLS,
    PatchProtocol,
    extract_patches,
    get_protocol,
    grid_positions,
    quality_score,
    quality_scores,
)
from camtrace.errors import CamtraceError


def _flat(value: int, size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def _checkerboard(lo: int, hi: int, size: int = 8) -> np.ndarray:
    board = np.indices((size, size)).sum(0) % 2
    return np.where(board[..., None], hi, lo).repeat(3, axis=2).astype(np.uint8)


def test_quality_of_flat_mid_grey() -> None:
    mu = 128 / 255
    assert quality_score(_flat(128)) == pytest.approx(0.7 * 4 * mu * (1 - mu), abs=1e-12)


def test_quality_of_black_and_white_is_zero() -> None:
    assert quality_score(_flat(0)) == 0.0
    assert quality_score(_flat(255)) == pytest.approx(0.0, abs=1e-12)


def test_quality_of_textured_patch() -> None:
    # mu = 0.5, sigma = 0.5 on every channel: 0.7 * 1 + 0.3 * (1 - 10^-1) = 0.97
    assert quality_score(_checkerboard(0, 255)) == pytest.approx(0.97, abs=1e-12)
    # Smaller amplitude: mu = 127/255, sigma = 25/255 on every channel.
    mu, sigma = 127 / 255, 25 / 255
    expected = 0.7 * 4 * mu * (1 - mu) + 0.3 * (1 - 10 ** (-2 * sigma))
    assert quality_score(_checkerboard(102, 152)) == pytest.approx(expected, abs=1e-12)


def test_quality_per_channel_mean() -> None:
    patch = _flat(0)
    patch[..., 1] = 51  # mu_G = 0.2: 4 * 0.2 * 0.8 = 0.64 on one channel of three
    assert quality_score(patch) == pytest.approx(0.7 * 0.64 / 3, abs=1e-12)


def test_quality_scores_is_the_vectorised_score() -> None:
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    one_by_one = [quality_score(p) for p in patches]
    assert np.allclose(quality_scores(patches), one_by_one, atol=1e-12)
    x = patches.astype(np.float64) / 255
    mu, sigma = x.mean(axis=(1, 2)), x.std(axis=(1, 2))
    reference = (0.7 * 4 * mu * (1 - mu) + 0.3 * (1 - np.exp(math.log(0.01) * sigma))).mean(1)
    assert np.allclose(quality_scores(patches), reference, atol=1e-12)


def test_grid_positions() -> None:
    pos = grid_positions(130, 200, 64)
    assert pos.tolist() == [[0, 0], [0, 64], [0, 128], [64, 0], [64, 64], [64, 128]]
    assert grid_positions(63, 500, 64).shape == (0, 2)


def test_protocol_table_and_overrides() -> None:
    assert PROTOCOLS["bondi"] == PatchProtocol("bondi", 64, 32, "quality")
    assert PROTOCOLS["guera"] == PatchProtocol("guera", 32, 500, "random")
    assert PROTOCOLS["gan"] == PatchProtocol("gan", 256, None, "all")
    assert get_protocol("bondi", size=32, count=8) == PatchProtocol("bondi", 32, 8, "quality")
    assert get_protocol("gan", count=4).selection == "quality"
    with pytest.raises(CamtraceError, match="unknown patch protocol"):
        get_protocol("nope")
    with pytest.raises(CamtraceError, match="needs a count"):
        PatchProtocol("x", 8, None, "random")


def _tile(values: list[np.ndarray], cols: int) -> np.ndarray:
    rows = [np.concatenate(values[i : i + cols], axis=1) for i in range(0, len(values), cols)]
    return np.concatenate(rows, axis=0)


def test_bondi_ranks_by_quality_and_excludes_saturation() -> None:
    s = 16
    tiles = [
        _flat(40, s),  # 0: dark, Q = 0.37
        _checkerboard(100, 156, s),  # 1: mid-grey textured, Q = 0.82, best unsaturated
        _checkerboard(0, 255, s),  # 2: highest Q (0.97) but saturated
        _flat(128, s),  # 3: mid-grey flat, Q = 0.70
        _flat(200, s),  # 4: bright, Q = 0.47
        _checkerboard(60, 120, s),  # 5: darker textured, Q = 0.77
    ]
    image = _tile(tiles, cols=3)
    patches, pos, scores = extract_patches(image, PatchProtocol("bondi", s, 4, "quality"))
    assert patches.shape == (4, s, s, 3) and scores.dtype == np.float32
    assert pos.tolist() == [[0, s], [s, 2 * s], [s, 0], [s, s]]  # tiles 1, 5, 3, 4
    assert np.all(np.diff(scores) <= 0)
    for p, (y, x) in zip(patches, pos, strict=True):
        assert np.array_equal(p, image[y : y + s, x : x + s])
    # Asking for all six: the saturated tile comes last, after every unsaturated one.
    _, pos6, _ = extract_patches(image, PatchProtocol("bondi", s, 6, "quality"))
    assert pos6[-1].tolist() == [0, 2 * s]


def test_bondi_tolerates_a_tiny_fraction_of_clipped_pixels() -> None:
    s = 64
    few = _checkerboard(100, 156, s)
    n_few = int(MAX_SATURATED_FRACTION * s * s)  # at the tolerance: still usable
    few.reshape(-1, 3)[:n_few, 0] = 255
    many = _checkerboard(100, 156, s)
    many.reshape(-1, 3)[: n_few + 1, 0] = 255  # just over: saturated
    clean = _flat(60, s)
    image = np.concatenate([clean, few, many], axis=1)
    _, pos, _ = extract_patches(image, PatchProtocol("bondi", s, 2, "quality"))
    assert pos.tolist() == [[0, s], [0, 0]]


def test_guera_random_non_overlapping() -> None:
    image = np.random.default_rng(0).integers(0, 256, (32 * 30, 32 * 20, 3), dtype=np.uint8)
    protocol = get_protocol("guera")
    patches, pos, scores = extract_patches(image, protocol, np.random.default_rng(5))
    assert patches.shape == (500, 32, 32, 3) and len(scores) == 500
    assert len({tuple(p) for p in pos.tolist()}) == 500
    assert np.all(pos % 32 == 0)
    for p, (y, x) in zip(patches[:20], pos[:20], strict=True):
        assert np.array_equal(p, image[y : y + 32, x : x + 32])
    _, again, _ = extract_patches(image, protocol, np.random.default_rng(5))
    _, other, _ = extract_patches(image, protocol, np.random.default_rng(6))
    assert np.array_equal(pos, again) and not np.array_equal(pos, other)


def test_guera_small_image_gives_every_cell() -> None:
    image = np.zeros((100, 70, 3), dtype=np.uint8)
    _, pos, _ = extract_patches(image, get_protocol("guera"), np.random.default_rng(0))
    assert pos.tolist() == grid_positions(100, 70, 32).tolist()


def test_gan_takes_the_whole_256_grid() -> None:
    image = np.random.default_rng(1).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    patches, pos, _ = extract_patches(image, get_protocol("gan"))
    assert patches.shape == (6, 256, 256, 3)
    assert pos.tolist() == grid_positions(600, 800, 256).tolist()
    assert np.array_equal(patches[4], image[256:512, 256:512])
    top2, _, scores = extract_patches(image, get_protocol("gan", count=2))
    assert len(top2) == 2 and scores[0] >= scores[1]


def test_image_smaller_than_a_patch() -> None:
    with pytest.raises(CamtraceError, match="smaller than a 64x64 patch"):
        extract_patches(np.zeros((63, 200, 3), np.uint8), get_protocol("bondi"))
