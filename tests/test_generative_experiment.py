"""The ``generators`` section of an experiment: key-path errors, the plan's checks, and one
tiny run on the tiny SimCam preset (Bondi2017 trained 1 epoch, two generator iterations per
target) that writes Chen's Tables 3-4 layout, keeps finished generators on a re-run and trains
the missing ones with ``camtrace train-attack``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from camtrace.cli import app
from camtrace.data.simcam import load_preset
from camtrace.errors import CamtraceError
from camtrace.evaluation.cfa_reference import DEMOSAICERS
from camtrace.schema import parse
from camtrace.workflows.config import GeneratorsConfig, parse_config
from camtrace.workflows.experiment import run_experiment, train_attack
from camtrace.workflows.generators.run import centre_crop, plan_generators
from tiny_runs import is_rate, tiny_experiment

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = {"bondi2017": 64, "mislnet": 64}
CLASSES = ["Halden_H20", "Kairo_DX-50", "Nimbus_N300"]


@pytest.mark.parametrize(
    "section, message",
    [
        ({}, r"generators\.method: required"),
        ({"method": "stylegan"}, r"generators\.method: 'stylegan' is not allowed"),
        ({"method": "mislgan", "eps": 8}, r"generators\.eps: applies to method gap only"),
        ({"method": "gap", "batch_size": 0}, r"generators\.batch_size: 0 is not allowed"),
        ({"method": "gap", "unseen": {"shots": 0}}, r"generators\.unseen\.shots: 0"),
        ({"method": "gap", "unseen": {"models": 3}}, r"generators\.unseen\.models: unknown key"),
        ({"method": "gap", "stop_sar": 1.5}, r"generators\.stop_sar: 1\.5 is not allowed"),
    ],
)
def test_bad_sections_name_their_key_path(section: dict, message: str) -> None:
    with pytest.raises(CamtraceError, match=message):
        parse_config({"generators": section})


@pytest.mark.parametrize(
    "section, message",
    [
        ({"method": "gap", "detectors": ["xception"]}, r"detectors: \['xception'\] are not"),
        ({"method": "gap", "targets": ["Canon_Ixus70"]}, r"targets: \['Canon_Ixus70'\]"),
        ({"method": "gap", "patch_size": 62}, "multiple of 4"),
        ({"method": "gap", "patch_size": 128}, "at most the 64 px"),
        ({"method": "gap", "patch_size": 32}, "too small for bondi2017"),
    ],
)
def test_plan_refuses_what_the_detectors_cannot_do(section: dict, message: str) -> None:
    with pytest.raises(CamtraceError, match=message):
        plan_generators(parse(GeneratorsConfig, section, "generators"), SIZES, CLASSES, seed=0)


def test_plan_resolves_targets_ensemble_and_transfer_judges() -> None:
    section = parse(
        GeneratorsConfig, {"method": "gap", "detectors": ["mislnet"], "patch_size": 48}, "g"
    )
    plan = plan_generators(section, {"bondi2017": 64, "mislnet": 64, "tuama2016": 64}, CLASSES, 3)
    assert plan.targets == tuple(CLASSES) and plan.patch_size == 48
    assert plan.judges == ("tuama2016",)  # bondi2017 needs 60 px: no transfer cell for it
    patches = np.arange(2 * 64 * 64 * 3, dtype=np.uint8).reshape(2, 64, 64, 3)
    crop = centre_crop(patches, 48)
    assert crop.shape == (2, 48, 48, 3) and np.array_equal(crop, patches[:, 8:56, 8:56])
    assert centre_crop(patches[:, :62, :62], 48)[0, 0, 0, 0] == patches[0, 6, 6, 0]  # even offset


def test_plan_knows_defended_detectors_by_their_architecture() -> None:
    section = parse(GeneratorsConfig, {"method": "gap", "patch_size": 48}, "g")
    sizes = {"mislnet": 64, "bondi2017-advtrain": 64, "tuama2016": 64}
    archs = {"mislnet": "mislnet", "bondi2017-advtrain": "bondi2017", "tuama2016": "tuama2016"}
    plan = plan_generators(section, sizes, CLASSES, 3, archs)
    assert plan.detectors == ("mislnet",)
    assert plan.judges == ("tuama2016",)  # the defended bondi2017 needs 60 px, as bondi2017


def test_train_attack_needs_a_generators_section(tmp_path: Path) -> None:
    with pytest.raises(CamtraceError, match="no generators section"):
        train_attack({"name": "plain"}, runs_dir=tmp_path)


def test_unseen_preset_models_are_new() -> None:
    unseen = {f"{m.make}_{m.model}" for m in load_preset("unseen").models}
    seen = {f"{m.make}_{m.model}" for p in ("default", "tiny") for m in load_preset(p).models}
    assert len(unseen) >= 3 and not unseen & seen


def tiny_config(root: Path, targets: str | list[str]) -> dict:
    return tiny_experiment(
        root,
        "tiny-generators",
        detectors=["bondi2017", "mislnet", "tuama2016"],  # two judges of the transfer
        generators={
            "method": "mislgan",
            "targets": targets,
            "train_patches": 16,
            "val_patches": 4,
            "eval_patches": 6,
            "iterations": 2,
            "batch_size": 2,
            "val_every": 1,
            "examples": 2,
            "photos": 1,
            "unseen": {"preset": "unseen", "shots": 1},
        },
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    root = tmp_path_factory.mktemp("generators")
    config = tiny_config(root, ["Halden_H20", "Nimbus_N300"])
    metrics = run_experiment(config, runs_dir=root / "runs", progress=False, log=lambda _: None)
    return metrics, root, root / "runs" / "tiny-generators"


@pytest.mark.slow
def test_experiment_writes_chen_tables_per_target(tiny_run: tuple[dict, Path, Path]) -> None:
    _, _, run_dir = tiny_run
    g = json.loads((run_dir / "metrics.json").read_text())["generators"]
    assert g["method"] == "mislgan" and g["detectors"] == ["bondi2017"]
    assert g["judges"] == ["mislnet", "tuama2016"] and g["patch_size"] == 64
    assert set(g["unseen"]["models"]) == {"Arveo_A5", "Corvid_C12", "Pellan_P-3", "Soluna_S9"}
    assert set(g["targets"]) == {"Halden_H20", "Nimbus_N300"}
    for name, t in g["targets"].items():
        assert Path(t["checkpoint"]) == run_dir / "generators" / f"mislgan-{name}" / (
            "generator.safetensors"
        )
        assert t["iterations"] == 2
        for group in ("seen", "unseen"):
            r = t[group]
            assert r["n"] == 6 and is_rate(r["sar"], 6) and is_rate(r["clean_sar"], 6)
            assert r["sar_by_detector"] == {"bondi2017": r["sar"]}
            assert r["psnr"] is None or r["psnr"] > 0
            assert all(is_rate(t["transfer"][a][group], 6) for a in g["judges"])
            assert is_rate(t["jpeg"][group], 6)
        # MISLGAN's synthetic CFA block: what classical demosaicers rebuild of the seen patches
        assert set(t["seen"]["cfa_reference"]) == set(DEMOSAICERS)
    assert (
        g["paper"]["tables"]["Database I (Dresden)"][0][3] == 99.25
    )  # Chen Table 3, target 1, SAR
    html = (run_dir / "report.html").read_text()
    assert "Chen 2019 Tables 3-4 layout" in html and "Database II" in html
    assert "classical demosaicers on the same patches" in html
    assert "Whole eval photos of the seen models" in html
    assert html.count("<img") >= 2 * 2 + 3  # per target: losses, examples; confusion, curve, photos
    losses = json.loads((run_dir / "generators" / "mislgan-Halden_H20" / "log.json").read_text())
    assert [r["iteration"] for r in losses["losses"]] == [1, 2]
    assert {"l1", "ce", "adversarial", "discriminator"} <= set(losses["losses"][0])


@pytest.mark.slow
def test_whole_photos_are_the_first_eval_photo_of_each_other_model_as_camtrace_attack_reads_them(
    tiny_run: tuple[dict, Path, Path],
) -> None:
    """generators.photos: each row is the first eval photo of another model, and where the
    photo is not read as the target already, its verdict is the one ``attack_image`` (the
    path of ``camtrace attack``, judged through Replay) gives; PSNR by scikit-image."""
    from skimage.metrics import peak_signal_noise_ratio

    from camtrace.attacks import make_attack
    from camtrace.data.images import load_rgb
    from camtrace.data.manifest import Manifest
    from camtrace.models.checkpoint import load_detector
    from camtrace.workflows.spoof import attack_image

    _, _, run_dir = tiny_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    manifest = Manifest.load(run_dir / "manifest.csv")
    detector = load_detector(metrics["detectors"]["bondi2017"]["checkpoint"])
    for target, t in metrics["generators"]["targets"].items():
        rows = t["photos"]["photos"]
        firsts: dict[str, Path] = {}
        for r in manifest:
            if r.split == "eval" and r.model != target:
                firsts.setdefault(r.model, manifest.abspath(r))
        photos = [firsts[m] for m in sorted(firsts)]
        assert [Path(r["photo"]).name for r in rows] == [p.name for p in photos]
        attack = make_attack("mislgan", generator=t["checkpoint"])
        for row, photo in zip(rows, photos, strict=True):
            spoofed, result = attack_image(detector, photo, attack)
            assert row["before"] == result.before.model
            if row["before"] != target:  # attack_image leaves a photo read as the target alone
                assert (row["read"], row["vote_share"]) == (
                    result.after.model,
                    result.after.scores[target],
                )
                assert row["psnr"] == pytest.approx(
                    peak_signal_noise_ratio(load_rgb(photo), spoofed), abs=1e-6
                )
        assert t["photos"]["sar"] == np.mean([r["read"] == target for r in rows])
        assert t["photos"]["clean_sar"] == np.mean([r["before"] == target for r in rows])


@pytest.mark.slow
def test_whole_photos_give_the_open_set_verdicts_camtrace_identify_gives_the_written_png(
    tiny_run: tuple[dict, Path, Path], tmp_path: Path
) -> None:
    """With the detector calibrated (``camtrace calibrate``), each photo's open-set verdict
    before and after is what ``camtrace identify --json`` answers on the PNG written of it,
    and the summary's shares count those answers; without a calibration the summary says
    why."""
    import shutil

    from PIL import Image

    from camtrace.attacks import make_attack
    from camtrace.data.images import load_rgb
    from camtrace.data.manifest import Manifest
    from camtrace.models.checkpoint import load_detector
    from camtrace.workflows.generators.run import measure_photos

    _, _, run_dir = tiny_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    target = "Nimbus_N300"
    t = metrics["generators"]["targets"][target]
    assert "open set unavailable" in t["photos"]["open_set"]
    entry = metrics["detectors"]["bondi2017"]
    ckpt = tmp_path / "bondi2017.safetensors"
    shutil.copy(entry["checkpoint"], ckpt)
    made = CliRunner().invoke(
        app,
        ["calibrate", str(ckpt), "--store", entry["patch_store"], "--frr", "0.5", "--quiet"],
    )
    assert made.exit_code == 0, made.output
    manifest = Manifest.load(run_dir / "manifest.csv")
    attack = make_attack("mislgan", generator=t["checkpoint"])
    measured = measure_photos(load_detector(ckpt), attack, manifest, target, 1)
    written = []
    for i, row in enumerate(measured["photos"]):
        clean = load_rgb(row["photo"])
        for name, pixels in (
            (f"{i}-clean.png", clean),
            (f"{i}-spoof.png", attack.spoof_image(clean)),
        ):
            Image.fromarray(pixels).save(tmp_path / name)
            written.append(tmp_path / name)
    found = CliRunner().invoke(
        app, ["identify", *map(str, written), "--detector", str(ckpt), "--json"]
    )
    assert found.exit_code == 0, found.output
    answers = [f["model"] for f in json.loads(found.stdout)]
    verdicts = [v for r in measured["photos"] for v in (r["open_set_before"], r["open_set"])]
    assert verdicts == answers
    after, before = answers[1::2], answers[0::2]
    o = measured["open_set"]
    assert (o["frr"], o["score"]) == (0.5, "mahalanobis")
    assert o["sar"] == np.mean([a == target for a in after])
    assert o["rejected"] == np.mean([a == "unknown" for a in after])
    assert o["clean_rejected"] == np.mean([b == "unknown" for b in before])


@pytest.mark.slow
def test_rerun_keeps_generators_and_train_attack_adds_missing_ones(
    tiny_run: tuple[dict, Path, Path],
) -> None:
    metrics, root, run_dir = tiny_run
    done = run_dir / "generators" / "mislgan-Halden_H20" / "generator.safetensors"
    stamp = done.stat().st_mtime_ns
    lines: list[str] = []
    again = run_experiment(
        tiny_config(root, ["Halden_H20", "Nimbus_N300"]),
        runs_dir=root / "runs",
        progress=False,
        log=lines.append,
    )
    assert done.stat().st_mtime_ns == stamp
    assert sum("finished, kept" in line for line in lines) == 2
    assert again["generators"]["targets"] == metrics["generators"]["targets"]
    config = root / "generators.yaml"
    config.write_text(yaml.safe_dump(tiny_config(root, "all")))
    result = CliRunner().invoke(
        app, ["train-attack", str(config), "--runs-dir", str(root / "runs"), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "Kairo_DX-50: trained" in result.output and "Halden_H20: finished, kept" in result.output
    assert (run_dir / "generators" / "mislgan-Kairo_DX-50" / "generator.safetensors").is_file()
    assert done.stat().st_mtime_ns == stamp


def test_an_edited_generators_section_retrains_its_generator(
    tiny_run: tuple[dict, Path, Path],
) -> None:
    """A generator folder trained with other settings is trained afresh, as a stale
    detector is, not refused."""
    _, root, run_dir = tiny_run
    config = tiny_config(root, ["Halden_H20"])
    run_experiment(config, runs_dir=root / "runs", progress=False, log=lambda _: None)
    config["generators"]["iterations"] = 3  # the generator above is now another config's
    lines: list[str] = []
    metrics = run_experiment(config, runs_dir=root / "runs", progress=False, log=lines.append)
    assert any("another config" in line and "training afresh" in line for line in lines), lines
    assert any("Halden_H20: trained afresh" in line for line in lines)
    assert metrics["generators"]["targets"]["Halden_H20"]["iterations"] == 3


def test_an_alpha_sweep_trains_one_generator_per_target_and_value(tmp_path: Path) -> None:
    """generators.alpha_sweep (Chen's open L1 scale): one generator per target and alpha,
    each trained with its own alpha (its card says so) and measured on its own row."""
    from camtrace.attacks.generative import load_generator

    config = tiny_config(tmp_path, ["Halden_H20"])
    config["detectors"] = ["mislnet"]
    config["generators"] |= {"alpha_sweep": [1.0, 0.01], "unseen": None, "examples": 0}
    metrics = run_experiment(config, runs_dir=tmp_path / "runs", progress=False, log=print)
    rows = metrics["generators"]["targets"]
    assert set(rows) == {"Halden_H20-alpha-1", "Halden_H20-alpha-0.01"}
    for name, row in rows.items():
        assert row["target"] == "Halden_H20"
        card = load_generator(row["checkpoint"]).card
        assert card["config"]["alpha"] == row["alpha"] == float(name.split("-alpha-")[1])


def test_a_pretrained_section_takes_the_zoos_generator_only_against_the_same_detectors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """generators.pretrained: the zoo's <method>-<target> is used when it was trained against
    the section's pretrained detectors at its patch size; otherwise the target is trained."""
    from types import SimpleNamespace

    from camtrace.models.zoo import GeneratorWeights
    from camtrace.workflows.generators import run as generators_run

    weights = tmp_path / "g.safetensors"
    weights.write_bytes(b"weights")
    entry = GeneratorWeights(
        name="mislgan-M_1", file="g.safetensors", bytes=7, sha256="", shipped=False,
        method="mislgan", target="M_1", against=["mislnet"], patch_size=64,
    )  # fmt: skip
    monkeypatch.setattr(generators_run, "generator_zoo", lambda: {entry.name: entry})
    monkeypatch.setattr(GeneratorWeights, "verified_path", lambda self: weights)
    plan = SimpleNamespace(
        section=SimpleNamespace(method="mislgan"), detectors=("m",), patch_size=64
    )
    shipped = {"m": {"pretrained": "mislnet"}}
    assert generators_run.zoo_generator(plan, shipped, "M_1") == weights
    assert generators_run.zoo_generator(plan, shipped, "M_2") is None  # no such entry
    assert generators_run.zoo_generator(plan, {"m": {"pretrained": None}}, "M_1") is None
    assert generators_run.zoo_generator(plan, {"m": {"pretrained": "bondi2017"}}, "M_1") is None
    plan.patch_size = 32
    assert generators_run.zoo_generator(plan, shipped, "M_1") is None
