"""The three patch protocols of the papers camtrace reproduces.

- ``bondi``: Bondi et al. 2017, Sec. II — K=32 non-overlapping 64x64 patches, no saturated
  pixels, "prioritize those whose average value is close to half the image dynamic".
- ``guera``: Güera et al. 2018, Sec. 4.1 — 500 uniformly random non-overlapping 32x32 patches.
- ``gan``: Chen et al. 2019 (MISLGAN) / Cozzolino et al. 2021 (SpoC) — every 256x256 patch
  of the non-overlapping grid.

Grids start at pixel (0, 0), so patches whose size is a multiple of 8 stay aligned with
the JPEG 8x8 block grid; the right and bottom remainders are dropped.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from camtrace.errors import CamtraceError

SELECTIONS = ("quality", "random", "all")

# Bondi et al. 2017 (tampering localisation), quality Q: alpha, beta, gamma.
ALPHA = 0.7
BETA = 4.0
GAMMA = math.log(0.01)

# A pixel is saturated when any channel is 0 or 255; Bondi excludes "all patches with
# saturated pixels". A handful of clipped pixels (JPEG ringing at a dark edge) is
# tolerated: a patch is saturated when more than this fraction of its pixels are.
MAX_SATURATED_FRACTION = 0.01

# Temporaries of the per-patch statistics are kept to ~8 M values per chunk.
STATS_CHUNK_VALUES = 1 << 23


@dataclass(frozen=True)
class PatchProtocol:
    """How patches are cut from one image: size, how many, and which ones."""

    name: str
    size: int
    count: int | None
    selection: str  # "quality" | "random" | "all"

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise CamtraceError(
                f"patch protocol {self.name}: selection {self.selection!r} is not one of "
                f"{list(SELECTIONS)}"
            )
        if self.size < 1:
            raise CamtraceError(f"patch protocol {self.name}: size {self.size} must be >= 1")
        if self.selection == "all" and self.count is not None:
            raise CamtraceError(
                f"patch protocol {self.name}: selection 'all' takes no count; "
                "use selection 'quality' to keep the best ones"
            )
        if self.selection != "all" and (self.count is None or self.count < 1):
            raise CamtraceError(
                f"patch protocol {self.name}: selection {self.selection!r} needs a count >= 1"
            )


PROTOCOLS: dict[str, PatchProtocol] = {
    "bondi": PatchProtocol("bondi", 64, 32, "quality"),
    "guera": PatchProtocol("guera", 32, 500, "random"),
    "gan": PatchProtocol("gan", 256, None, "all"),
}


def get_protocol(name: str, size: int | None = None, count: int | None = None) -> PatchProtocol:
    """A named protocol, optionally with another patch size or count.

    A count on ``gan`` (all patches) keeps the top-``count`` patches by quality.
    """
    if name not in PROTOCOLS:
        raise CamtraceError(f"unknown patch protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
    base = PROTOCOLS[name]
    changes: dict = {}
    if size is not None:
        changes["size"] = size
    if count is not None:
        changes["count"] = count
        if base.selection == "all":
            changes["selection"] = "quality"
    return dataclasses.replace(base, **changes)


def quality_score(patch: np.ndarray) -> float:
    """Q(P) of one uint8 (H, W, 3) patch; see :func:`quality_scores`."""
    return float(quality_scores(patch[None])[0])


def quality_scores(patches: np.ndarray) -> np.ndarray:
    """Q(P) = 1/3 sum_c [alpha beta mu_c (1 - mu_c) + (1 - alpha)(1 - exp(gamma sigma_c))].

    Bondi et al. 2017 (tampering localisation), alpha=0.7, beta=4, gamma=ln(0.01); mu_c and
    sigma_c are the mean and standard deviation of channel c scaled to [0, 1]. Q is highest
    for mid-grey, textured patches. (N, H, W, 3) uint8 -> (N,) float64.
    """
    mu, sigma = _channel_stats(patches)
    q = ALPHA * BETA * mu * (1.0 - mu) + (1.0 - ALPHA) * (1.0 - np.exp(GAMMA * sigma))
    return q.mean(axis=1)


def _channel_stats(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-patch, per-channel mean and std in [0, 1], from exact integer sums.

    Sums of x and x^2 in int64 are exact, so var = (m S2 - S1^2) / m^2 has no cancellation
    error; chunks keep the uint16 temporaries bounded.
    """
    n = len(patches)
    channels_first = patches.reshape(n, -1, 3).transpose(0, 2, 1)
    m = channels_first.shape[2]
    step = max(1, STATS_CHUNK_VALUES // max(1, m * 3))
    s1 = np.empty((n, 3), dtype=np.int64)
    s2 = np.empty((n, 3), dtype=np.int64)
    for start in range(0, n, step):
        x = np.ascontiguousarray(channels_first[start : start + step])
        s1[start : start + step] = x.sum(axis=-1, dtype=np.int64)
        sq = x.astype(np.uint16)
        sq *= sq  # 255^2 fits in uint16
        s2[start : start + step] = sq.sum(axis=-1, dtype=np.int64)
    var = (m * s2 - s1 * s1) / float(m * m)
    return s1 / (m * 255.0), np.sqrt(var) / 255.0


def saturated_fractions(patches: np.ndarray) -> np.ndarray:
    """Fraction of pixels with any channel at 0 or 255, per patch: (N, H, W, 3) -> (N,)."""
    clipped = ((patches == 0) | (patches == 255)).any(axis=-1)
    return clipped.mean(axis=(1, 2))


def grid_positions(height: int, width: int, size: int) -> np.ndarray:
    """Top-left (y, x) of the non-overlapping ``size`` grid from (0, 0), row-major: (M, 2)."""
    ys = np.arange(height // size) * size
    xs = np.arange(width // size) * size
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.int64)


def grid_patches(image: np.ndarray, size: int) -> np.ndarray:
    """All grid patches in :func:`grid_positions` order: (M, size, size, 3) uint8."""
    gh, gw = image.shape[0] // size, image.shape[1] // size
    blocks = image[: gh * size, : gw * size].reshape(gh, size, gw, size, 3)
    return blocks.swapaxes(1, 2).reshape(gh * gw, size, size, 3)


def extract_patches(
    image: np.ndarray, protocol: PatchProtocol, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut ``protocol``'s patches from (H, W, 3) uint8 ``image``.

    Returns patches (K, s, s, 3) uint8, top-left positions (K, 2) and quality scores (K,)
    float32. ``quality``: unsaturated patches best-first, then — only if fewer than K are
    unsaturated — the best saturated ones, so K patches come back whenever the grid has
    them. ``random``: ``count`` grid cells drawn without replacement with ``rng`` (seed 0
    when None), in grid order. ``all``: the whole grid in row-major order.
    """
    s = protocol.size
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise CamtraceError(f"image array is {image.dtype} {image.shape}; expected (H, W, 3) uint8")
    if image.shape[0] < s or image.shape[1] < s:
        raise CamtraceError(
            f"image is {image.shape[1]}x{image.shape[0]}, smaller than a {s}x{s} patch; "
            "use a larger image or a smaller patch size"
        )
    positions = grid_positions(image.shape[0], image.shape[1], s)
    patches = grid_patches(image, s)
    if protocol.selection == "quality":
        return _select_by_quality(patches, positions, protocol.count)
    if protocol.selection == "random":
        rng = rng if rng is not None else np.random.default_rng(0)
        k = min(protocol.count, len(positions))
        keep = np.sort(rng.choice(len(positions), size=k, replace=False))
        patches, positions = patches[keep], positions[keep]
    return patches, positions, quality_scores(patches).astype(np.float32)


def _select_by_quality(
    patches: np.ndarray, positions: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bondi's rule: unsaturated first, then by descending Q; ties keep grid order."""
    scores = quality_scores(patches)
    saturated = saturated_fractions(patches) > MAX_SATURATED_FRACTION
    order = np.lexsort((-scores, saturated))[:count]
    return patches[order], positions[order], scores[order].astype(np.float32)
