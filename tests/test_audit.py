"""``camtrace audit`` on generated Dresden-named trees: clean, with planted shortcuts, broken."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from camtrace.data.codec import camera_exif, save_image
from camtrace.errors import CamtraceError
from camtrace.workflows.audit import audit

MODELS = ("Halden_H20", "Kairo_K1", "Vexa_V8")
SCENES = 4


def _dresden_tree(
    root: Path,
    sizes: dict[str, tuple[int, int]] = {},
    quality: dict[str, int] = {},
    noise: dict[str, int] = {},
    no_exif: tuple[str, ...] = (),
) -> Path:
    """3 models x 2 devices x 4 scenes of random flat blocks, one JPEG each (quality 90 and
    noise +-3 grey levels unless planted), scene ids in ``scenes.csv``; every model shoots
    the same scene content."""
    rows = ["file,scene"]
    for scene in range(SCENES):
        blocks = np.random.default_rng(scene).integers(40, 216, (12, 12, 3))
        texture = np.kron(blocks, np.ones((8, 8, 1), np.int64))  # flat 8x8 patches
        for m, model in enumerate(MODELS):
            h, w = sizes.get(model, (48, 64))
            for device in range(2):
                a = noise.get(model, 3)
                grain = np.random.default_rng([scene, m, device]).integers(-a, a + 1, (h, w, 3))
                image = np.clip(texture[:h, :w] + grain, 0, 255).astype(np.uint8)
                name = f"{model}_{device}_{scene}.JPG"
                save_image(
                    root / model / name,
                    image,
                    quality.get(model, 90),
                    exif=None if model in no_exif else camera_exif(*model.split("_")),
                )
                rows.append(f"{name},scene{scene}")
    (root / "scenes.csv").write_text("\n".join(rows) + "\n")
    return root


def _audit(root: Path, out: Path) -> dict:
    return audit(root, out, scenes_csv=root / "scenes.csv")


def test_clean_tree_flags_nothing_and_writes_json_and_html(tmp_path: Path) -> None:
    result = _audit(_dresden_tree(tmp_path / "data"), tmp_path / "out")
    assert result["flags"] == [] and result["skipped"] == []
    assert result["images"] == 24 and sorted(result["models"]) == list(MODELS)
    assert result["split"] == "scene-disjoint" and result["tables_identify"] == 0
    assert result["shared_scenes"] == [f"scene{s}" for s in range(SCENES)]
    halden = result["models"]["Halden_H20"]
    assert halden["sizes"] == {"64x48": 8} and halden["jpeg_quality"] == {"90": 8}
    assert halden["exif_fraction"] == 1.0 and halden["orientations"] == {"landscape": 8}
    # The JPEG table is shared, so the table classifier is at chance (1/3) exactly.
    assert result["accuracy"]["JPEG table"] == pytest.approx(1 / 3)
    written = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert written.pop("camtrace_version") and written.pop("created") and written == result
    assert "No shortcut flagged" in (tmp_path / "out" / "report.html").read_text()
    # Every model adds the same noise: the residuals carry no model trace.
    assert result["trace_accuracy"] <= 0.6


def test_camera_traces_are_measured_not_flagged(tmp_path: Path) -> None:
    """Models that differ only in their noise (a camera trace): the residual classifier
    separates them, the colour classifier cannot, and nothing is flagged as a shortcut."""
    noise = {"Halden_H20": 1, "Kairo_K1": 4, "Vexa_V8": 12}
    result = _audit(_dresden_tree(tmp_path / "data", noise=noise), tmp_path / "out")
    assert result["trace_accuracy"] >= 0.9
    assert result["accuracy"]["colour statistics"] < 0.9 and result["flags"] == []
    assert "camera-trace classifier" in (tmp_path / "out" / "report.html").read_text()


def test_planted_image_size_is_flagged(tmp_path: Path) -> None:
    root = _dresden_tree(tmp_path / "data", sizes={"Vexa_V8": (48, 80)})
    flags = _audit(root, tmp_path / "out")["flags"]
    assert flags == ["image size alone identifies a model: 1 of 3 (Vexa_V8)"]


def test_planted_orientation_is_flagged(tmp_path: Path) -> None:
    root = _dresden_tree(tmp_path / "data", sizes={"Kairo_K1": (64, 48)})  # portrait
    result = _audit(root, tmp_path / "out")
    assert result["models"]["Kairo_K1"]["orientations"] == {"portrait": 8}
    assert "orientation alone identifies a model: 1 of 3 (Kairo_K1)" in result["flags"]


def test_planted_exif_shortcut_is_flagged(tmp_path: Path) -> None:
    root = _dresden_tree(tmp_path / "data", no_exif=("Vexa_V8",))
    result = _audit(root, tmp_path / "out")
    assert result["models"]["Vexa_V8"]["exif_fraction"] == 0.0
    assert result["flags"] == ["EXIF presence alone identifies a model: 1 of 3 (Vexa_V8)"]


def test_planted_jpeg_quality_is_flagged(tmp_path: Path) -> None:
    root = _dresden_tree(tmp_path / "data", quality={"Kairo_K1": 75})
    result = _audit(root, tmp_path / "out")
    assert result["models"]["Kairo_K1"]["jpeg_quality"] == {"75": 8}
    assert result["tables_identify"] == 1
    assert result["flags"] == ["JPEG table alone identifies a model: 1 of 3 (Kairo_K1)"]


def test_broken_files_are_skipped_and_counted(tmp_path: Path) -> None:
    root = _dresden_tree(tmp_path / "data")
    good = root / "Vexa_V8" / "Vexa_V8_0_0.JPG"
    (root / "Vexa_V8" / "Vexa_V8_1_9.JPG").write_bytes(good.read_bytes()[:-400])  # truncated
    (root / "Vexa_V8" / "Vexa_V8_1_8.JPG").write_text("not an image")
    save_image(root / "Vexa_V8" / "Vexa_V8_1_7.JPG", np.zeros((8, 8, 3), np.uint8))  # tiny
    (root / "Vexa_V8" / "holiday.JPG").write_bytes(good.read_bytes())  # not Dresden-named
    result = audit(root, tmp_path / "out")
    assert result["images"] == 24
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in result["skipped"]}
    assert sorted(reasons) == [
        "Vexa_V8_1_7.JPG",
        "Vexa_V8_1_8.JPG",
        "Vexa_V8_1_9.JPG",
        "holiday.JPG",
    ]
    assert "truncated" in reasons["Vexa_V8_1_9.JPG"] and "smaller" in reasons["Vexa_V8_1_7.JPG"]
    assert all("\n" not in r for r in reasons.values())
    assert result["split"] == "image-disjoint"  # no scenes CSV given


def test_one_model_or_no_images_is_a_one_line_error(tmp_path: Path) -> None:
    root = tmp_path / "one"
    save_image(root / "Vexa_V8_0_1.JPG", np.full((48, 64, 3), 100, np.uint8))
    save_image(root / "Vexa_V8_1_2.JPG", np.full((48, 64, 3), 100, np.uint8))
    with pytest.raises(CamtraceError, match=r"only Vexa_V8; audit compares camera models"):
        audit(root, tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CamtraceError, match="no image files"):
        audit(empty, tmp_path / "out")


def test_cli_prints_the_flags_and_the_skips(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from camtrace.cli import app

    root = _dresden_tree(tmp_path / "data", sizes={"Vexa_V8": (48, 80)})
    (root / "Vexa_V8" / "Vexa_V8_1_8.JPG").write_text("not an image")
    args = ["audit", str(root), "--out", str(tmp_path / "out"), "--quiet"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "24 images, 3 models, 1 skipped" in result.stdout
    assert "- image size alone identifies a model: 1 of 3 (Vexa_V8)" in result.stdout
    assert "skipped:" in result.stderr and (tmp_path / "out" / "report.html").is_file()
