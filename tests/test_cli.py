"""The command line end to end on a tiny simulated dataset, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from camtrace.cli import app
from camtrace.workflows.config import ExperimentConfig, parse_config
from tiny_runs import is_rate, ok

runner = CliRunner()


def test_pipeline_writes_a_checkpoint_with_a_card(pipeline: dict[str, Path]) -> None:
    card = json.loads(ok("info", pipeline["ckpt"]))
    assert card["arch"] == "bondi2017" and card["svm"] is True
    assert card["patches"] == {"name": "bondi", "size": 64, "count": 32}
    assert len(card["data"]["manifest_digest"]) == 64


def test_identify_json_and_attribution_map(pipeline: dict[str, Path]) -> None:
    image = min((pipeline["data"] / "images").glob("*.JPG"))
    out = json.loads(
        ok(
            "identify",
            image,
            "--detector",
            pipeline["ckpt"],
            "--json",
            "--map",
            pipeline["root"] / "map.png",
        )
    )
    card = json.loads(ok("info", pipeline["ckpt"]))
    assert out[0]["model"] in card["classes"]
    assert out[0]["patches"] == 12  # a 192x256 image has 3x4 grid blocks, fewer than K=32
    # scores are vote shares printed to 4 decimals: each is votes/12 within the rounding, 5e-5
    votes = [share * 12 for share in out[0]["scores"].values()]
    assert all(abs(v - round(v)) <= 12 * 5e-5 for v in votes)
    assert sum(round(v) for v in votes) == 12
    assert (pipeline["root"] / "map.png").read_bytes()[:4] == b"\x89PNG"


def photo_and_other_model(pipeline: dict[str, Path]) -> tuple[Path, str]:
    """A simulated photo and a camera model the detector does not give it: an attack target."""
    image = min((pipeline["data"] / "images").glob("*.JPG"))
    before = json.loads(ok("identify", image, "--detector", pipeline["ckpt"], "--json"))[0]
    return image, next(
        m for m in json.loads(ok("info", pipeline["ckpt"]))["classes"] if m != before["model"]
    )


def spoof(pipeline: dict[str, Path], out: Path, *options: str) -> tuple[dict, dict]:
    """``camtrace attack`` (PGD eps 8, 20 steps) of a photo toward another model, to ``out``;
    the JSON result and the model ``identify`` then reads from the written file."""
    image, target = photo_and_other_model(pipeline)
    args = ("--target", target, "--eps", "8", "--steps", "20", *options)
    result = json.loads(
        ok(
            "attack",
            image,
            "--detector",
            pipeline["ckpt"],
            *args,
            "--out",
            out,
            "--json",
            "--quiet",
        )
    )
    assert result["target"] == target
    return result, json.loads(ok("identify", out, "--detector", pipeline["ckpt"], "--json"))[0]


def attack_fails(pipeline: dict[str, Path], out: Path, *options: str) -> str:
    """Output of a ``camtrace attack`` that must fail, after checking it wrote nothing."""
    image = min((pipeline["data"] / "images").glob("*.JPG"))
    args = ["attack", str(image), "--detector", str(pipeline["ckpt"]), *options, "--out", str(out)]
    bad = runner.invoke(app, args)
    assert bad.exit_code != 0 and not out.exists()
    return f"{bad.output}{bad.exception}"


def test_attack_writes_an_image_that_identify_reads_as_the_target(
    pipeline: dict[str, Path],
) -> None:
    result, again = spoof(pipeline, pipeline["root"] / "spoofed.png")
    assert result["success"] and result["after"]["model"] == result["target"]
    assert result["linf"] <= 8 and again["model"] == result["target"]
    attack_fails(pipeline, pipeline["root"] / "x.png", "--target", "Nokia_3310")


def test_attack_through_jpeg_writes_a_jpeg_that_keeps_the_target(pipeline: dict[str, Path]) -> None:
    out = pipeline["root"] / "spoofed.jpg"
    result, again = spoof(pipeline, out, "--jpeg-quality", "90", "--through-jpeg")
    assert result["success"] and again["model"] == result["target"]
    assert "needs a JPEG output" in attack_fails(
        pipeline, pipeline["root"] / "y.png", "--through-jpeg"
    )


def test_evaluate_writes_metrics_and_report(pipeline: dict[str, Path]) -> None:
    ok(
        "evaluate",
        "--detector",
        pipeline["ckpt"],
        "--store",
        pipeline["store"],
        "--name",
        "ev",
        "--runs-dir",
        pipeline["root"] / "runs",
    )
    run = pipeline["root"] / "runs" / "ev"
    metrics = json.loads((run / "metrics.json").read_text())
    result = next(iter(metrics["detectors"].values()))
    assert is_rate(result["svm"]["patch"]["accuracy"], result["patches"])
    assert result["patches"] == sum(sum(row) for row in result["svm"]["patch"]["confusion"])
    assert "data:image/png;base64," in (run / "report.html").read_text()
    assert yaml.safe_load((run / "config.yaml").read_text())["split"] == "eval"


def test_run_config_records_what_it_ran(tmp_path: Path) -> None:
    config = {
        "name": "tiny",
        "seed": 3,
        "workdir": str(tmp_path / "work"),
        "data": {"source": "simulate", "preset": "tiny", "shots": 8, "size": [192, 256]},
        "split": {"protocol": "bondi", "eval_scene_frac": 0.25, "val_scene_frac": 0.25},
        "train": {"epochs": 1},
        "svm": {"Cs": [0.1]},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    ok("run", path, "--runs-dir", tmp_path / "runs", "--quiet")
    run = tmp_path / "runs" / "tiny"
    kept = yaml.safe_load((run / "config.yaml").read_text())  # every default written out
    assert parse_config(kept) == parse_config(config) and kept["train"]["batch_size"] == 128
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["seed"] == 3 and metrics["identification"]["images"] > 0
    assert (run / "detector.safetensors").is_file() and (run / "report.html").is_file()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "camtrace.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_user_errors_are_one_line_without_traceback(
    pipeline: dict[str, Path], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    photo = min((pipeline["data"] / "images").glob("*.JPG"))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo.read_bytes()[: photo.stat().st_size // 3])
    bomb = tmp_path / "bomb.png"  # 20000 x 20000: past Pillow's decompression-bomb guard
    Image.new("1", (20000, 20000)).save(bomb)
    manifest = tmp_path / "columns.csv"
    manifest.write_text("path,make,camera\nimages/a.jpg,Halden,H20\n")  # no model column
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: [unclosed\n")
    attack = ("--detector", pipeline["ckpt"], "--out", tmp_path / "out.png")
    cases = [
        (("attack", truncated, *attack), "truncated.jpg"),
        (("attack", bomb, *attack), "bomb.png"),
        (("split", manifest), "columns.csv"),
        (("run", bad_yaml), "bad.yaml"),
        (("identify", tmp_path / "missing.jpg", "--detector", pipeline["ckpt"]), "missing.jpg"),
        (("identify", corrupt, "--detector", pipeline["ckpt"]), "corrupt.jpg"),
        (("identify", corrupt, "--detector", corrupt), "corrupt.jpg"),
        (
            ("train", pipeline["store"], "--arch", "resnet9000", "--out", tmp_path / "t"),
            "resnet9000",
        ),
    ]
    for args, named in cases:
        result = cli(*args)
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and named in lines[0], (
            result.stderr
        )
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "t").exists() and not (tmp_path / "out.png").exists()


def test_unseen_models_reuse_the_frozen_cnn(pipeline: dict[str, Path]) -> None:
    """Bondi III-B: only the SVMs are fitted; the feature extractor is the trained one."""
    import torch

    from camtrace.models import load_detector

    out = pipeline["root"] / "unseen"
    ok("train", pipeline["store"], "--features-from", pipeline["ckpt"], "--out", out)
    new, old = load_detector(out / "detector.safetensors"), load_detector(pipeline["ckpt"])
    assert new.card["svm_only"] is True and new.svm is not None
    x = torch.rand(2, 3, 64, 64) * 255
    assert torch.equal(new.embed(x), old.embed(x))


def test_quickstart_preset_names_the_run_and_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`quickstart --preset hard` runs the quickstart config on the hard preset, as its own
    run (the experiment itself is measured in the README, not here)."""
    import camtrace.workflows.experiment as experiment

    seen: list[ExperimentConfig] = []

    def fake_run(config: ExperimentConfig, **_: object) -> dict:
        seen.append(config)
        raise SystemExit(0)

    monkeypatch.setattr(experiment, "run_experiment", fake_run)
    runner.invoke(app, ["quickstart", "--preset", "hard", "--workdir", str(tmp_path)])
    runner.invoke(app, ["quickstart", "--workdir", str(tmp_path)])
    assert [(c.name, c.data.preset) for c in seen] == [
        ("quickstart-hard", "hard"),
        ("quickstart", "default"),
    ]
    assert all(c.workdir == str(tmp_path) for c in seen)


@pytest.mark.slow
def test_marra2017_fits_svms_only_identifies_and_refuses_gradient_attacks(
    pipeline: dict[str, Path], tmp_path: Path
) -> None:
    """Bondi Fig. 3's hand-crafted baseline through the same commands as the CNN."""
    out = pipeline["root"] / "marra"
    printed = ok("train", pipeline["store"], "--arch", "marra2017", "--out", out, "--quiet")
    assert "hand-crafted features, SVMs fitted" in printed
    ckpt = out / "detector.safetensors"
    card = json.loads(ok("info", ckpt))
    assert card["arch"] == "marra2017" and card["svm_only"] is True and card["svm"] is True
    image = min((pipeline["data"] / "images").glob("*.JPG"))
    found = json.loads(ok("identify", image, "--detector", ckpt, "--json"))[0]
    assert found["model"] in card["classes"] and found["patches"] == 12
    target = next(m for m in card["classes"] if m != found["model"])
    cases = [
        (
            ("attack", image, "--detector", ckpt, "--target", target, "--out", tmp_path / "a.png"),
            "square",
        ),
        (
            (
                "train",
                pipeline["store"],
                "--arch",
                "marra2017",
                "--no-svm",
                "--out",
                tmp_path / "n",
            ),
            "SVMs only",
        ),
    ]
    for args, named in cases:
        result = cli(*args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and named in lines[0], result.stderr
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "n").exists()
