"""SimCam: determinism, file contract (names, EXIF, tables, manifest), CFA orientation,
preset validation and scenes. Tiny preset, tiny frames: the whole file runs in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from camtrace.data.codec import EXIF_MAKE, EXIF_MODEL, SUBSAMPLING, Jpeg, ijg_tables
from camtrace.data.manifest import COLUMNS, Manifest
from camtrace.data.simcam import available_presets, load_preset, simulate
from camtrace.data.simcam.isp import demosaic
from camtrace.data.simcam.pipeline import CONFIG_NAME, shoot
from camtrace.data.simcam.preset import PRESET_DIR
from camtrace.data.simcam.scenes import dead_leaves, photo_radiance, plan_scenes, render_scene
from camtrace.data.simcam.sensor import mosaic
from camtrace.errors import CamtraceError

SIZE = (48, 64)
SHOTS = 3
PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
ALGORITHMS = ("bilinear", "malvar2004", "menon2007", "vng", "ea")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    out = tmp_path_factory.mktemp("simcam") / "tiny"
    return simulate("tiny", out, shots=SHOTS, size=SIZE, seed=3, workers=1, progress=False)


def _bytes(manifest: Manifest) -> dict[str, bytes]:
    return {Path(r.path).name: manifest.abspath(r).read_bytes() for r in manifest}


def test_presets_ship_and_load() -> None:
    assert {"default", "tiny"} <= set(available_presets())
    default = load_preset("default")
    assert len(default.models) == 10 and default.instances == 3
    assert len(load_preset("tiny").models) == 3
    assert load_preset(PRESET_DIR / "tiny.yaml").sha256 == load_preset("tiny").sha256


def test_manifest_rows_and_columns(tiny: Manifest) -> None:
    preset = load_preset("tiny")
    assert len(tiny) == len(preset.models) * preset.instances * SHOTS
    header = (tiny.root / "manifest.csv").read_text().splitlines()[0]
    assert tuple(header.split(",")) == COLUMNS
    assert tiny.models == sorted(c.label for c in preset.models)
    for r in tiny:
        assert r.make and r.model.startswith(r.make + "_") and r.split == ""
        assert r.path.startswith("images/") and tiny.abspath(r).is_file()
    # shot k of every device shows the same scene k
    scenes = {(r.shot, r.scene) for r in tiny}
    assert len(scenes) == SHOTS == len({s for _, s in scenes})


def test_file_names_parse_dresden_style(tiny: Manifest) -> None:
    for r in tiny:
        model, instance, shot = Path(r.path).stem.rsplit("_", 2)
        assert (model, instance, shot) == (r.model, r.instance, r.shot)
        assert Path(r.path).suffix == ".JPG" and shot.isdigit() and len(shot) == 4


def test_exif_make_model_and_quantisation_tables(tiny: Manifest) -> None:
    cameras = {c.label: c for c in load_preset("tiny").models}
    for r in tiny:
        camera = cameras[r.model]
        with Image.open(tiny.abspath(r)) as im:
            exif = im.getexif()
            assert (exif[EXIF_MAKE], exif[EXIF_MODEL]) == (camera.make, camera.model)
            assert Jpeg.from_file(tiny.abspath(r)) == camera.jpeg.jpeg()
            assert JpegImagePlugin.get_sampling(im) == SUBSAMPLING[camera.jpeg.subsampling]
            assert im.size == (SIZE[1], SIZE[0]) and im.mode == "RGB"


def test_jpeg_sections_become_tweaked_ijg_tables() -> None:
    cameras = {c.model: c.jpeg.jpeg() for c in load_preset("tiny").models}
    # tiny.yaml: H20 quality 90 (the defaults), DX-50 quality 95 with luma_tweaks
    # [[8, 2], [63, -3]] and 4:2:2, N300 quality 97 with 4:4:4
    assert cameras["H20"] == Jpeg(qtables=ijg_tables(90), subsampling="4:2:0")
    assert cameras["N300"] == Jpeg(qtables=ijg_tables(97), subsampling="4:4:4")
    (luma, chroma), (base_luma, base_chroma) = cameras["DX-50"].qtables, ijg_tables(95)
    changed = [i for i in range(64) if luma[i] != base_luma[i]]
    assert changed == [8, 63] and luma[8] == base_luma[8] + 2
    assert luma[63] == max(1, base_luma[63] - 3) and chroma == base_chroma
    assert cameras["DX-50"].subsampling == "4:2:2"


def test_deterministic_across_runs_and_worker_counts(tiny: Manifest, tmp_path: Path) -> None:
    again = simulate(
        "tiny", tmp_path / "a", shots=SHOTS, size=SIZE, seed=3, workers=2, progress=False
    )
    assert _bytes(again) == _bytes(tiny)
    other = simulate(
        "tiny", tmp_path / "b", shots=SHOTS, size=SIZE, seed=4, workers=1, progress=False
    )
    assert _bytes(other).keys() == _bytes(tiny).keys()
    assert all(a != b for a, b in zip(_bytes(other).values(), _bytes(tiny).values()))


def test_devices_differ_on_the_same_shot(tiny: Manifest) -> None:
    """Instances of a model see the same scene but differ in framing, noise and PRNU."""
    pixels = {
        (r.model, r.instance): np.asarray(Image.open(tiny.abspath(r)), np.float32)
        for r in tiny
        if r.shot == "0000"
    }
    a, b = pixels["Halden_H20", "0"], pixels["Halden_H20", "1"]
    assert np.abs(a - b).mean() > 1.0


def test_relative_output_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    made = simulate("tiny", "data/sim", shots=1, size=SIZE, workers=1, progress=False)
    loaded = Manifest.load(tmp_path / "data" / "sim")
    assert [r.path for r in loaded] == [r.path for r in made]
    assert all(r.path.startswith("images/") and loaded.abspath(r).is_file() for r in loaded)


def test_finished_run_is_reused_and_changed_run_redone(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = simulate("tiny", out, shots=2, size=SIZE, workers=1, progress=False)
    stamp = {r.path: first.abspath(r).stat().st_mtime_ns for r in first}
    second = simulate("tiny", out, shots=2, size=SIZE, workers=1, progress=False)
    assert second.digest() == first.digest()
    assert stamp == {r.path: second.abspath(r).stat().st_mtime_ns for r in second}
    fewer = simulate("tiny", out, shots=1, size=SIZE, workers=1, progress=False)
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(
        Path(r.path).name for r in fewer
    )
    assert '"shots": 1' in (out / CONFIG_NAME).read_text()


@pytest.mark.parametrize("cfa", PATTERNS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_demosaic_restores_a_flat_colour(cfa: str, algorithm: str) -> None:
    colour = np.array([0.7, 0.35, 0.1], np.float32)
    rgb = demosaic(mosaic(np.broadcast_to(colour, (16, 16, 3)).copy(), cfa), cfa, algorithm)
    assert rgb.dtype == np.float32 and rgb.shape == (16, 16, 3)
    np.testing.assert_allclose(rgb[4:12, 4:12].mean((0, 1)), colour, atol=0.02)


@pytest.mark.parametrize("cfa", PATTERNS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_flat_red_scene_stays_red_through_the_whole_camera(cfa: str, algorithm: str) -> None:
    camera = load_preset("tiny").models[0].replace(cfa=cfa, demosaic=algorithm)
    scene = np.broadcast_to(np.array([0.5, 0.12, 0.03], np.float32), (40, 40, 3))
    rgb = shoot(camera, 0, scene, (32, 32), np.random.default_rng(0)).astype(float)
    r, g, b = rgb[8:24, 8:24].mean((0, 1))
    assert r > g + 40 and g > b


def _write_preset(tmp_path: Path, old: str, new: str) -> Path:
    text = (PRESET_DIR / "tiny.yaml").read_text()
    assert old in text
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("cfa: RGGB", "cfa: RGBG", "defaults.cfa"),
        ("demosaic: vng", "demosaic: ahd", "models[1].demosaic"),
        ("blur: 0.8", "blur: -1", "models[2].optics.blur"),
        ("model: H20", "model: H_20", "models[0].model"),
        ("quality: 95", "quality: high", "models[1].jpeg.quality"),
        ("[8, 2]", "[64, 2]", "models[1].jpeg.luma_tweaks[0][0]"),
        ("prnu: 0.008, ", "", "defaults.sensor.prnu"),
        ("tone_gamma: 1.0", "tone_gamma: 1.0, gama: 2", "defaults.isp.gama"),
        ("instances: 2", "instances: two", "instances"),
        ("spread: 1.0", "", "spread: required"),
    ],
)
def test_bad_preset_names_file_and_field(tmp_path: Path, old: str, new: str, field: str) -> None:
    path = _write_preset(tmp_path, old, new)
    with pytest.raises(CamtraceError) as err:
        load_preset(path)
    message = str(err.value)
    assert str(path) in message and field in message and "\n" not in message


def test_unknown_preset_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(CamtraceError, match="default, hard, many, tiny"):
        load_preset("no-such-preset")
    broken = tmp_path / "broken.yaml"
    broken.write_text("instances: [1, 2\n")
    with pytest.raises(CamtraceError, match="not valid YAML"):
        load_preset(broken)


def test_bad_arguments_are_camtrace_errors(tmp_path: Path) -> None:
    for kwargs in ({"shots": 0}, {"size": (8, 64)}, {"workers": 0}, {"seed": -1}):
        with pytest.raises(CamtraceError):
            simulate("tiny", tmp_path, progress=False, **kwargs)


def test_spread_zero_keeps_only_discrete_differences(tmp_path: Path) -> None:
    """CFA, PSF kind, JPEG quality and table tweaks are choices; spread 0 keeps only them."""
    path = _write_preset(tmp_path, "spread: 1.0", "spread: 0.0")
    models = load_preset(path).models
    assert {(m.optics.blur, m.sensor, m.isp) for m in models} == {
        (0.7, models[0].sensor, models[0].isp)
    }
    assert [m.jpeg for m in models] == [m.jpeg for m in load_preset("tiny").models]
    assert [(m.cfa, m.optics.psf) for m in models] == [
        ("RGGB", "gaussian"),
        ("GRBG", "gaussian"),
        ("BGGR", "disk"),
    ]


def test_large_spread_moves_positive_fields_by_ratio_and_stays_in_range(tmp_path: Path) -> None:
    base = load_preset(_write_preset(tmp_path, "spread: 1.0", "spread: 0.0")).models[0]
    models = load_preset(_write_preset(tmp_path, "spread: 1.0", "spread: 5.0")).models
    for m in models:
        assert m.sensor.iso[0] >= 25.0 and m.sensor.full_well > 0 and m.optics.blur >= 0
        assert 0.0 <= m.isp.sharpen_amount <= 5.0
    one = load_preset("tiny").models
    for m1, m5 in zip(one, models):
        if m1.sensor.full_well != base.sensor.full_well:
            ratio = m1.sensor.full_well / base.sensor.full_well
            assert m5.sensor.full_well == pytest.approx(min(1e6, base.sensor.full_well * ratio**5))


def test_scene_plan_ids_and_user_photos(tmp_path: Path) -> None:
    spec = load_preset("tiny").scenes
    plan = plan_scenes(8, 0, spec)
    assert plan == plan_scenes(8, 0, spec)
    assert sum(s.kind == "skimage" for s in plan) <= 4
    assert all(s.id.endswith(f"{k:04d}") for k, s in enumerate(plan) if s.kind != "skimage")
    for name in ("a", "b"):
        Image.fromarray(np.full((300, 400, 3), 120, np.uint8)).save(tmp_path / f"{name}.png")
    with_user = plan_scenes(8, 0, spec, tmp_path)
    assert {"user-a", "user-b"} <= {s.id for s in with_user}
    assert len({s.id for s in with_user}) == 8
    with pytest.raises(CamtraceError, match="no such folder"):
        plan_scenes(8, 0, spec, tmp_path / "missing")


def test_scenes_are_linear_radiance_and_deterministic() -> None:
    spec = load_preset("tiny").scenes
    for scene in plan_scenes(4, 1, spec):
        a = render_scene(scene, (40, 56), 1, spec)
        assert a.shape == (40, 56, 3) and a.dtype == np.float32
        assert 0 <= a.min() and a.max() <= 1 and a.std() > 0.01
        np.testing.assert_array_equal(a, render_scene(scene, (40, 56), 1, spec))
    leaves = dead_leaves(np.random.default_rng(0), (128, 128), spec.dead_leaves)
    assert len(np.unique(leaves.reshape(-1, 3), axis=0)) > 1000  # busy, not a few flat disks


def test_photo_is_downscaled_at_least_twice_and_linearised() -> None:
    checker = (np.indices((400, 600)).sum(0) % 2 * 255).astype(np.uint8)  # Nyquist pattern
    photo = Image.fromarray(np.stack([checker] * 3, -1))
    radiance = photo_radiance(photo, (100, 150), np.random.default_rng(0))
    assert radiance.shape == (100, 150, 3)
    # a box average turns the pixel checkerboard into flat grey 127.5 (stored as 127 or 128,
    # linear 0.212 or 0.216): no trace of the original pattern is left
    np.testing.assert_allclose(radiance, 0.214, atol=0.0025)
    assert radiance.dtype == np.float32
