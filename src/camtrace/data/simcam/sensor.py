"""The sensor: spectral response, Bayer colour filter array, PRNU and noise."""

from __future__ import annotations

import functools
import zlib
from typing import Any

import numpy as np

RGB = {"R": 0, "G": 1, "B": 2}
PRNU_STREAM = 3  # SeedSequence stream tag


def cfa_channels(cfa: str) -> np.ndarray:
    """The 2x2 tile of channel indices, e.g. RGGB -> [[0, 1], [1, 2]] (top-left first)."""
    return np.array([RGB[c] for c in cfa]).reshape(2, 2)


def mosaic(rgb: np.ndarray, cfa: str) -> np.ndarray:
    """Sample one colour per pixel through the CFA: (H, W, 3) -> (H, W)."""
    tile = cfa_channels(cfa)
    raw = np.empty(rgb.shape[:2], rgb.dtype)
    for dy in range(2):
        for dx in range(2):
            raw[dy::2, dx::2] = rgb[dy::2, dx::2, tile[dy, dx]]
    return raw


def cfa_gain_map(shape: tuple[int, int], cfa: str, gains: np.ndarray) -> np.ndarray:
    """A per-pixel map holding ``gains[c]`` where the CFA samples channel c."""
    tile = np.asarray(gains, np.float32)[cfa_channels(cfa)]
    reps = (-(-shape[0] // 2), -(-shape[1] // 2))
    return np.tile(tile, reps)[: shape[0], : shape[1]]


def crosstalk_matrix(crosstalk: float) -> np.ndarray:
    """Spectral overlap of the colour filters: each channel leaks ``crosstalk / 2`` into
    each other one (rows sum to 1, so grey stays grey)."""
    return ((1 - 1.5 * crosstalk) * np.eye(3) + crosstalk / 2).astype(np.float32)


def sensor_response(sensitivity: tuple[float, float, float], crosstalk: float) -> np.ndarray:
    """The 3x3 map from scene linear RGB to raw camera RGB: diag(sensitivity) @ crosstalk."""
    return np.diag(np.asarray(sensitivity, np.float32)) @ crosstalk_matrix(crosstalk)


@functools.lru_cache(maxsize=64)
def prnu_pattern(device: str, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """The device's photo-response non-uniformity K ~ N(0, sigma^2), fixed per device.

    Seeded by the device name only, so a device keeps its fingerprint across datasets.
    """
    seed = np.random.SeedSequence([PRNU_STREAM, zlib.crc32(device.encode())])
    return sigma * np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def device_noise_gain(device: str, variation: float) -> float:
    """A device's manufacturing spread of its noise level: ``1 + variation * N(0, 1)``."""
    seed = np.random.SeedSequence([PRNU_STREAM + 1, zlib.crc32(device.encode())])
    return float(max(0.2, 1.0 + variation * np.random.default_rng(seed).standard_normal()))


def shot_iso(iso: tuple[float, float], stops: float, rng: np.random.Generator) -> float:
    """This shot's ISO: base ISO raised by an exponential number of stops (mean ``stops``),
    truncated at the model's maximum, so most shots sit at or near base ISO and high ISO is
    rare, as auto-ISO behaves across everyday scenes."""
    base, top = min(iso), max(iso)
    span = np.log2(top / base)
    u = rng.random()
    raised = -stops * np.log1p(-u * (1 - np.exp(-span / stops)))  # truncated-exponential CDF^-1
    return float(base * 2**raised)


def noise_std(signal: Any, gain: float, full_well: float, read_noise: float) -> Any:
    """Std of the sensor noise at ``signal`` (full-scale units, a number or an array):
    shot noise ``sqrt(x g / full_well)`` and read noise ``read_noise g / full_well``."""
    return np.sqrt(signal * (gain / full_well) + (read_noise * gain / full_well) ** 2)


def expose_raw(
    raw: np.ndarray,
    rng: np.random.Generator,
    prnu: np.ndarray,
    gain: float,
    full_well: float,
    read_noise: float,
) -> np.ndarray:
    """Raw signal in [0, 1] -> sensor output: ``x (1 + K) + shot + read`` noise, clipped.

    With analog gain ``g`` (ISO / 100), a full-scale signal holds ``full_well / g``
    electrons: :func:`noise_std` gives the noise at each pixel.
    """
    signal = raw * (1 + prnu)
    std = noise_std(np.maximum(signal, 0), gain, full_well, read_noise)
    noisy = signal + std * rng.standard_normal(raw.shape, np.float32)
    return np.clip(noisy, 0, 1)
