"""Natural procedural scenes and the scene plan: determinism, radiance range, the share of
each kind, photograph-like statistics (1/f spectrum, highlights and shadows, straight edges)
and anti-aliased edges. Small frames: the file runs in a few seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from camtrace.data.simcam import load_preset
from camtrace.data.simcam.natural import (
    DIFFUSE_MAX,
    KINDS,
    SUPERSAMPLE,
    Canvas,
    develop,
    natural_scene,
)
from camtrace.data.simcam.preset import PRESET_DIR
from camtrace.data.simcam.scenes import dead_leaves, plan_scenes, render_scene
from camtrace.errors import CamtraceError

SHAPE = (96, 128)
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def _scene(kind: str, seed: int, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    return natural_scene(np.random.default_rng(seed), shape, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_natural_scenes_are_deterministic_linear_radiance(kind: str) -> None:
    a = _scene(kind, 0)
    assert a.shape == (*SHAPE, 3) and a.dtype == np.float32
    assert 0 <= a.min() and a.max() <= 1 and a.std() > 0.02
    np.testing.assert_array_equal(a, _scene(kind, 0))
    assert not np.array_equal(a, _scene(kind, 1))


def test_plan_shares_each_kind_and_spreads_it_evenly() -> None:
    spec = load_preset("tiny").scenes.replace(skimage=False, natural_share=0.4)
    plan = plan_scenes(40, 0, spec)
    assert plan == plan_scenes(40, 0, spec)
    kinds = [s.kind for s in plan]
    assert kinds.count("natural") == 16 and kinds.count("dead_leaves") == 24
    assert {s.id for s in plan if s.kind == "natural"} == {
        f"nat{k:04d}" for k, s in enumerate(plan) if s.kind == "natural"
    }
    # evenly spread: 2 natural scenes in every 5 consecutive shots
    assert all(kinds[k : k + 5].count("natural") == 2 for k in range(0, 40, 5))
    scene = plan[kinds.index("natural")]
    np.testing.assert_array_equal(
        render_scene(scene, (40, 56), 3, spec), render_scene(scene, (40, 56), 3, spec)
    )


def test_user_photos_come_first_then_natural_then_dead_leaves(tmp_path: Path) -> None:
    from PIL import Image

    for name in "abcde":
        Image.fromarray(np.full((60, 80, 3), 99, np.uint8)).save(tmp_path / f"{name}.png")
    spec = load_preset("tiny").scenes.replace(photo_share=0.2, natural_share=0.8)
    kinds = [s.kind for s in plan_scenes(10, 0, spec, tmp_path)]
    # 5 user photos exceed the photo share; natural scenes get what is left
    assert kinds.count("file") == 5 and kinds.count("natural") == 5
    assert "dead_leaves" not in kinds


@pytest.mark.parametrize("shots", [24, 83])
def test_default_preset_shows_dead_leaves_in_at_most_half_of_the_shots(shots: int) -> None:
    for skimage in (True, False):  # with or without the scikit-image photos
        spec = load_preset("default").scenes.replace(skimage=skimage)
        plan = plan_scenes(shots, 0, spec)
        assert sum(s.kind == "dead_leaves" for s in plan) <= shots / 2


def test_shares_above_one_are_rejected(tmp_path: Path) -> None:
    text = (
        (PRESET_DIR / "tiny.yaml").read_text().replace("natural_share: 0.5", "natural_share: 0.9")
    )
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(CamtraceError, match=r"scenes\.natural_share: photo_share \+ natural"):
        load_preset(tmp_path / "bad.yaml")


def spectrum_slope(radiance: np.ndarray) -> float:
    """Log-log slope of the radially averaged power spectrum of the luminance (Hann window),
    between 4 cycles per frame and 0.25 cycles/px (below the box filter's roll-off)."""
    lum = radiance @ LUMA
    h, w = lum.shape
    window = np.hanning(h)[:, None] * np.hanning(w)[None, :]
    power = np.abs(np.fft.fft2((lum - lum.mean()) * window)) ** 2
    f = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    edges = np.geomspace(4 / min(h, w), 0.25, 12)
    ring = np.digitize(f, edges)
    mean_power = [power[ring == i].mean() for i in range(1, len(edges))]
    centres = np.sqrt(edges[1:] * edges[:-1])
    return float(np.polyfit(np.log(centres), np.log(mean_power), 1)[0])


def test_natural_scenes_have_a_photographs_power_spectrum() -> None:
    """Photographs' power falls as f^-2 +- 0.5 (van der Schaaf & van Hateren 1996): the
    median scene must lie within that spread, every single scene within three times it."""
    slopes = [spectrum_slope(_scene(kind, seed, (160, 208))) for kind in KINDS for seed in range(3)]
    assert -2.5 <= np.median(slopes) <= -1.5, slopes
    assert all(-3.5 <= s <= -0.5 for s in slopes), slopes


def test_highlights_clip_and_shadows_are_dark() -> None:
    """Specular highlights exceed any diffuse surface; shadows reach near-black."""
    scenes = [_scene(kind, seed) for kind in KINDS for seed in range(3)]
    for kind, seed in ((k, s) for k in ("street", "still_life") for s in range(3)):
        assert (_scene(kind, seed) > DIFFUSE_MAX).any(), (kind, seed)
    for scene in scenes:
        lum = scene @ LUMA
        assert (lum < 0.02 * DIFFUSE_MAX).mean() > 0.001  # deep shadow, dark paint
    assert sum((s > DIFFUSE_MAX).any() for s in scenes) >= 7


def axis_share(radiance: np.ndarray) -> float:
    """Share of the edges (the strongest tenth of the gradients of gamma-encoded luminance)
    whose direction lies within 10 degrees of horizontal or vertical; about 20/90 for
    isotropic content, a little more on a pixel grid."""
    gy, gx = np.gradient((radiance @ LUMA) ** (1 / 2.2))
    angle = np.degrees(np.arctan2(gy, gx)) % 90
    energy = gx**2 + gy**2
    edges = energy > np.quantile(energy, 0.9)
    return float(((angle < 10) | (angle > 80))[edges].mean())


def test_street_scenes_are_made_of_straight_edges() -> None:
    for seed in range(3):
        assert axis_share(_scene("street", seed)) > 0.45
    spec = load_preset("tiny").scenes.dead_leaves
    assert axis_share(dead_leaves(np.random.default_rng(0), SHAPE, spec)) < 0.35


def test_edges_are_antialiased_by_supersampling() -> None:
    """A black bar whose left edge sits 1/3 px into pixel 10 covers 2/3 of that pixel."""
    canvas = Canvas((8, 24), np.random.default_rng(0))
    canvas.material((0.0, 0.0, 1.0))  # white wall
    canvas.rect(10 + 1 / SUPERSAMPLE, -1, 30, 9, canvas.material((0.0, 0.0, 0.0)))
    row = develop(canvas)[4, :, 1]
    white = row[5]
    assert white == pytest.approx(DIFFUSE_MAX, rel=1e-5) and row[12] == 0
    assert row[10] == pytest.approx(white / 3, rel=1e-5)
