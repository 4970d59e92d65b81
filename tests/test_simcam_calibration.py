"""SimCam calibrated to real cameras (issue 11): trace statistics of the default preset
inside the ranges of real camera originals, the new pipeline stages, and the hard preset
whose JPEG settings identify no model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from camtrace.data.codec import Jpeg, ijg_tables, stored
from camtrace.data.simcam import load_preset, simulate
from camtrace.data.simcam.optics import _radial_maps, olpf, radial_warp, sensor_border
from camtrace.data.simcam.pipeline import scene_margin, shoot
from camtrace.data.simcam.scenes import plan_scenes, render_scene
from camtrace.data.simcam.sensor import shot_iso
from camtrace.errors import CamtraceError
from camtrace.evaluation.traces import border_seam_ratio, cfa_trace_ratio, noise_sigma
from camtrace.workflows.audit import audit

SIZE = (384, 512)  # the quickstart's frame: distortion correction resamples in pixels
SHOTS = 6


def _photos(camera, scenes: list[np.ndarray]) -> list[np.ndarray]:
    """The camera's JPEG-decoded photos of ``scenes`` (one seeded shot each)."""
    return [
        stored(shoot(camera, 0, s, SIZE, np.random.default_rng(k)), camera.jpeg.jpeg())
        for k, s in enumerate(scenes)
    ]


def test_default_preset_cfa_trace_within_real_camera_range() -> None:
    """Issue 11: median CFA trace ratio <= 1.1 for most models, none above 1.3 (real
    camera originals: 1.006-1.019)."""
    preset = load_preset("default")
    m = scene_margin(preset, SIZE)
    shape = (SIZE[0] + 2 * m, SIZE[1] + 2 * m)
    scenes = [
        render_scene(s, shape, 0, preset.scenes) for s in plan_scenes(SHOTS, 0, preset.scenes)
    ]
    medians = {
        c.label: float(np.median([cfa_trace_ratio(p).ratio for p in _photos(c, scenes)]))
        for c in preset.models
    }
    assert max(medians.values()) <= 1.3, medians
    assert sum(v <= 1.1 for v in medians.values()) > len(medians) / 2, medians


def test_default_preset_base_iso_noise_on_smooth_content() -> None:
    """Issue 11: at base ISO, Immerkaer's noise sigma on smooth content <= 2.5 grey levels
    (real originals: 0-1.7)."""
    m = scene_margin(load_preset("default"), SIZE)
    yy, xx = np.mgrid[0 : SIZE[0] + 2 * m, 0 : SIZE[1] + 2 * m] / max(SIZE)
    smooth = np.stack([0.1 + 0.3 * xx, 0.12 + 0.25 * yy, 0.08 + 0.1 * xx * yy], -1)
    for camera in load_preset("default").models:
        base = min(camera.sensor.iso)
        at_base = camera.replace(sensor=camera.sensor.replace(iso=(base, base)))
        sigma = np.median(
            [noise_sigma(p) for p in _photos(at_base, [smooth.astype(np.float32)] * 2)]
        )
        assert sigma <= 2.5, (camera.label, sigma)


def test_shot_iso_favours_base_iso_and_stays_in_range() -> None:
    rng = np.random.default_rng(0)
    draws = np.array([shot_iso((100.0, 1600.0), 1.0, rng) for _ in range(4000)])
    assert draws.min() >= 100.0 and draws.max() <= 1600.0
    stops = np.log2(draws / 100)
    # truncated exponential, mean 1 stop before truncation at 4: median ln2 / (1 - ...) ~ 0.67
    assert 0.55 < np.median(stops) < 0.8
    assert (stops < 1).mean() > 0.6 and (stops > 3).mean() < 0.06


def test_olpf_and_distortion_correction() -> None:
    rng = np.random.default_rng(1)
    image = rng.random((40, 48, 3), dtype=np.float32)
    filtered = olpf(image, 1.0)
    assert filtered.mean() == pytest.approx(image.mean(), abs=0.01)  # energy kept
    assert filtered.std() < 0.75 * image.std()  # detail at the sampling frequency removed
    assert olpf(image, 0.0) is image
    # the ISP's correction undoes the lens's barrel distortion (to first order) on smooth content
    yy, xx = np.mgrid[0:60, 0:80].astype(np.float32) / 80
    smooth = np.stack([xx, yy, xx * yy], -1)
    round_trip = radial_warp(radial_warp(smooth, -0.03), 0.03)
    assert np.abs(round_trip - smooth)[5:-5, 5:-5].max() < 0.01
    assert np.abs(radial_warp(smooth, 0.03) - smooth).max() > 0.01


@pytest.mark.parametrize("size", [(384, 512), (768, 1024)])
def test_distortion_correction_reads_only_sensor_pixels(size: tuple[int, int]) -> None:
    """Issue 22: the correction of every default model, on a sensor larger than the frame by
    its border, samples the output's pixels from inside the sensor (kernel reach included),
    so no mirrored edge reaches the photo."""
    radius = np.hypot((size[0] - 1) / 2, (size[1] - 1) / 2)
    for camera in load_preset("default").models:
        k1 = camera.optics.distortion
        b = sensor_border(k1, size)
        assert b % 2 == 0  # the crop keeps the CFA phase
        map_x, map_y = _radial_maps((size[0] + 2 * b, size[1] + 2 * b), k1, radius)
        out_x, out_y = (
            map_x[b : b + size[0], b : b + size[1]],
            map_y[b : b + size[0], b : b + size[1]],
        )
        reach = 4  # Lanczos-4
        assert out_x.min() >= reach - 1 and out_x.max() <= size[1] + 2 * b - reach, camera.label
        assert out_y.min() >= reach - 1 and out_y.max() <= size[0] + 2 * b - reach, camera.label


def test_border_seam_ratio_sees_a_mirrored_edge() -> None:
    """A ramp with noise has no seam; the same ramp mirrored in its last 10 rows (what
    BORDER_REFLECT does beyond the frame) folds there: a second difference of one slope."""
    rng = np.random.default_rng(0)
    rows = np.linspace(40, 200, 256)[:, None] + rng.normal(0, 0.5, (256, 256))
    folded = rows.copy()
    folded[-10:] = rows[-11:-21:-1]

    def as_rgb(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.clip(a, 0, 255).astype(np.uint8)[..., None], 3, axis=2)

    assert border_seam_ratio(as_rgb(rows)) < 6
    assert border_seam_ratio(as_rgb(folded)) > 8


def test_hard_preset_shares_jpeg_settings_and_keeps_the_cameras() -> None:
    hard, default = load_preset("hard"), load_preset("default")
    assert [c.label for c in hard.models] == [c.label for c in default.models]
    for h, d in zip(hard.models, default.models):
        assert h.replace(jpeg=d.jpeg) == d
    assert len({c.jpeg for c in hard.models}) == 1
    section = hard.models[0].jpeg
    assert section.subsampling == "4:2:0" and isinstance(section.quality, tuple)
    rng = np.random.default_rng(0)
    lo, hi = section.quality
    drawn = {section.for_shot(rng) for _ in range(200)}
    assert drawn == {Jpeg(qtables=ijg_tables(q), subsampling="4:2:0") for q in range(lo, hi + 1)}
    assert hard.sha256 != default.sha256
    with pytest.raises(CamtraceError, match="for_shot"):
        section.jpeg()


def test_hard_preset_jpeg_settings_identify_no_model(tmp_path: Path) -> None:
    manifest = simulate("hard", tmp_path / "hard", shots=4, size=(48, 64), progress=False)
    result = audit(manifest, tmp_path / "audit")
    assert result["tables_identify"] == 0
    assert not any("JPEG" in flag for flag in result["flags"])


def test_preset_extends_errors(tmp_path: Path) -> None:
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"extends: {loop}\n")
    with pytest.raises(CamtraceError, match="extends itself"):
        load_preset(loop)
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: default\nall_models: [1]\n")
    with pytest.raises(CamtraceError, match="all_models"):
        load_preset(bad)
