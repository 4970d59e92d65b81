"""Spoof detection: the consistency checks of ``camtrace detect-spoof`` on hand-made photos
(EXIF naming another model than the traces, JPEG tables of another camera, a real camera's
tables known only from a reference, the PRNU of a device of another model), the learned
detector beating chance on an attack it never saw, the section end to end, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from camtrace.attacks import make_attack
from camtrace.data.codec import Jpeg, camera_exif, recompress, save_image
from camtrace.data.simcam import camera_tables
from camtrace.models import Detector, build, load_detector, save_detector
from camtrace.models.fingerprint import make_card, save_fingerprint
from camtrace.models.prnu import ResidualSettings
from camtrace.models.spoofnet import SPOOF_CLASSES
from camtrace.models.zoo import spoof_detector_zoo
from camtrace.training.config import TrainConfig
from camtrace.training.engine import PatchSet
from camtrace.workflows.spoof_check import (
    SPOOF_DETECTOR,
    attacked_patches,
    detect_spoof,
    load_spoof_detector,
    prnu_check,
)
from camtrace.workflows.spoof_detection.train import train_spoofnet
from tiny_runs import cli_error, ijg_luma, is_rate, tiny_experiment

pytestmark = pytest.mark.usefixtures("one_thread")


def answering(classes: list[str], answer: str, path: Path) -> Path:
    """A detector checkpoint that reads every patch as ``answer``: its last linear layer
    zeroed but for a bias on that class."""
    torch.manual_seed(0)
    det: Detector = build("spoofnet", classes)
    last = [m for m in det.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(10.0 * torch.tensor([c == answer for c in classes], dtype=torch.float32))
    return save_detector(det, path)


def photo(seed: int = 0, size: int = 128) -> np.ndarray:
    """A smooth colour scene (no clipping) of ``size`` x ``size``."""
    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.normal(0, 1, (size, size, 3)), sigma=(4, 4, 0))
    return np.clip(np.rint(128 + 40 * base / base.std()), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def spoof_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spoof detector that calls every patch clean (the checks are under test here)."""
    return answering(list(SPOOF_CLASSES), "clean", tmp_path_factory.mktemp("sd") / "clean.st")


CAMERAS = ["Halden_H20", "Nimbus_N300", "Sony_ILCE-7M3"]


def checks_of(report) -> dict[str, tuple[str, str]]:
    return {c.name.split()[0]: (c.status, c.sentence) for c in report.checks}


def test_simcam_tables_are_the_ijg_tables_of_the_preset_with_its_tweaks() -> None:
    # default.yaml: Halden H20 is quality 80 with luma_tweaks [[0, -1], [1, 1]]
    expected = ijg_luma(80)
    expected[0] -= 1
    expected[1] += 1
    assert list(camera_tables()["Halden_H20"].qtables[0]) == expected
    # Ostara Q1: quality 75, untweaked
    assert list(camera_tables()["Ostara_Q1"].qtables[0]) == ijg_luma(75)


def test_exif_naming_another_model_than_the_traces_is_flagged(
    tmp_path: Path, spoof_detector: Path
) -> None:
    image = tmp_path / "photo.jpg"
    halden = camera_tables()["Halden_H20"]
    save_image(image, photo(), halden, exif=camera_exif("Halden", "H20"))
    spoofed = detect_spoof(
        image,
        detector=answering(CAMERAS, "Nimbus_N300", tmp_path / "nimbus.safetensors"),
        spoof_detector=spoof_detector,
    )
    checks = checks_of(spoofed)
    assert spoofed.model == "Nimbus_N300" and spoofed.suspicious
    assert checks["EXIF"][0] == "warn" and "Halden H20" in checks["EXIF"][1]
    assert checks["JPEG"][0] == "warn" and "Halden_H20's" in checks["JPEG"][1]  # whose they are
    assert checks["PRNU"][0] == "info" and not spoofed.learned.attacked
    honest = detect_spoof(
        image,
        detector=answering(CAMERAS, "Halden_H20", tmp_path / "halden.safetensors"),
        spoof_detector=spoof_detector,
    )
    assert checks_of(honest)["EXIF"][0] == "pass" and checks_of(honest)["JPEG"][0] == "pass"
    assert not honest.suspicious


def test_foreign_tables_of_a_real_camera_are_judged_only_against_a_reference(
    tmp_path: Path, spoof_detector: Path
) -> None:
    image, original, other = tmp_path / "a.jpg", tmp_path / "original.jpg", tmp_path / "b.jpg"
    exif = camera_exif("Sony", "ILCE-7M3")
    save_image(image, photo(0), 75, exif=exif)
    save_image(original, photo(1), 75, exif=exif)
    save_image(other, photo(2), 95, exif=exif)
    sony = answering(CAMERAS, "Sony_ILCE-7M3", tmp_path / "sony.safetensors")
    unknown = checks_of(detect_spoof(image, detector=sony, spoof_detector=spoof_detector))
    assert unknown["JPEG"][0] == "info" and "SimCam's models only" in unknown["JPEG"][1]
    assert unknown["EXIF"][0] == "pass"
    same = detect_spoof(image, detector=sony, spoof_detector=spoof_detector, reference=original)
    assert checks_of(same)["JPEG"][0] == "pass"
    foreign = detect_spoof(image, detector=sony, spoof_detector=spoof_detector, reference=other)
    assert checks_of(foreign)["JPEG"][0] == "warn"


def fingerprints(folder: Path, devices: dict[str, np.ndarray]) -> Path:
    folder.mkdir()
    for device, k in devices.items():
        card = make_card(device, 10, k.shape, ResidualSettings())
        save_fingerprint(folder / f"{device}.safetensors", k, card)
    return folder


def test_the_prnu_of_a_device_of_another_model_is_flagged(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    k_halden, k_nimbus = rng.normal(0, 0.03, (2, 128, 128))
    clean = photo(4).astype(np.float64)
    shot = np.clip(np.rint(clean * (1 + k_halden[..., None])), 0, 255).astype(np.uint8)
    both = fingerprints(tmp_path / "both", {"Halden_H20_0": k_halden, "Nimbus_N300_1": k_nimbus})
    status, sentence = (lambda c: (c.status, c.sentence))(
        prnu_check(shot, both, "Nimbus_N300", CAMERAS)
    )
    assert status == "warn" and "Halden_H20_0's" in sentence and "a Halden_H20 device" in sentence
    assert prnu_check(shot, both, "Halden_H20", CAMERAS).status == "pass"
    nimbus_only = fingerprints(tmp_path / "nimbus", {"Nimbus_N300_1": k_nimbus})
    missing = prnu_check(shot, nimbus_only, "Nimbus_N300", CAMERAS)
    assert missing.status == "info" and "No enrolled device" in missing.sentence
    assert prnu_check(shot, None, "Nimbus_N300", CAMERAS).status == "info"
    unknown = prnu_check(shot, both, "Nimbus_N300", ["Nimbus_N300"])  # Halden not a class
    assert unknown.status == "info" and "not known here" in unknown.sentence


def jpeg_scenes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Camera-like clean 64 px patches: smooth textures with sensor noise, saved as JPEG."""
    base = gaussian_filter(rng.normal(0, 1, (n, 64, 64, 3)), sigma=(0, 3, 3, 1.5))
    base = 128 + 60 * base / base.std() + rng.normal(0, 2, base.shape)
    return recompress(np.clip(np.rint(base), 0, 255).astype(np.uint8), Jpeg(quality=90))


@pytest.mark.slow
def test_the_learned_detector_beats_chance_on_an_attack_it_never_saw(tmp_path: Path) -> None:
    """Trained on FGSM alone (eps 2 against the shipped bondi2017), SpoofNet meets MI-FGSM.
    Chance: a detector blind to the pixels calls attacked and clean patches attacked at the
    same rate, so its detection rate minus its false-positive rate is 0."""
    rng = np.random.default_rng(0)
    target = load_detector("bondi2017")

    def attacked(method: str, x: np.ndarray, **params: float) -> np.ndarray:
        aim = torch.as_tensor(np.arange(len(x)) % target.num_classes)
        return make_attack(method, **params)(target, x, target=aim)[0]

    clean = jpeg_scenes(rng, 340)
    positives = attacked("fgsm", clean[:120], eps=2)
    x = np.concatenate([clean[:240], positives])
    y = np.r_[np.zeros(240), np.ones(len(positives))].astype(np.int64)
    order = rng.permutation(len(x))
    fit, val = order[:270], order[270:]
    sets = [PatchSet(torch.from_numpy(x[i]), torch.from_numpy(y[i])) for i in (fit, val)]
    config = TrainConfig(epochs=3, batch_size=32, lr=1e-3, optimizer="adam", weight_decay=0.0)
    spoofnet = train_spoofnet("srm+bayar", *sets, config, tmp_path, {}, progress=False).detector
    held_out = attacked("mifgsm", clean[240:], eps=2, alpha=0.5, steps=5)
    detection = attacked_patches(spoofnet, held_out).mean()
    false_positives = attacked_patches(spoofnet, clean[240:]).mean()
    assert detection - false_positives >= 0.3, (detection, false_positives)


@pytest.mark.slow
def test_the_section_measures_every_attack_and_renders_its_table(tmp_path: Path) -> None:
    from camtrace.workflows.experiment import run_experiment
    from camtrace.workflows.spoof_detection.report import spoof_detection_markdown

    section = {
        "train_patches": 24,
        "val_patches": 8,
        "eval_patches": 8,
        "attack_patches": 4,
        "jpeg_eval": [80],
        "train_attacks": [{"method": "fgsm", "eps": [2], "targets": "all"}],
        "held_out": [
            {"method": "pgd", "eps": 2, "targets": "all", "params": {"steps": 2}},
            {"method": "pgd", "eps": 2, "targets": "all", "params": {"steps": 1, "jpeg": 90}},
        ],
        "train": {"epochs": 1},
        "linear": False,
    }
    config = tiny_experiment(tmp_path, "spoof", spoof_detection=section)
    metrics = run_experiment(config, runs_dir=tmp_path / "runs", progress=False)
    s = metrics["spoof_detection"]
    assert s["detector"] == "spoofnet" and Path(s["checkpoint"]).is_file()
    assert load_detector(s["checkpoint"]).classes == list(SPOOF_CLASSES)
    assert set(s["negatives"]) == {"clean", "JPEG q80"}
    rows = s["attacks"]
    assert [rows[r]["held_out"] for r in rows] == [False, True, True]
    for row in rows.values():
        assert is_rate(row["detected"]["spoofnet"], row["n"]) and is_rate(row["success"], row["n"])
    table = spoof_detection_markdown(metrics).splitlines()
    assert table[0].startswith("| evaluation patches |") and "spoofnet |" in table[0]
    assert len(table) == 2 + 2 + len(rows)


def test_the_shipped_spoof_detector_carries_the_rates_of_its_kept_run() -> None:
    kept = Path(__file__).resolve().parents[1] / "results" / "spoof-detection" / "metrics.json"
    run = json.loads(kept.read_text())["spoof_detection"]
    entry = spoof_detector_zoo()[SPOOF_DETECTOR]
    assert entry.false_positives == {
        k: v["flagged"][run["detector"]] for k, v in run["negatives"].items()
    }
    assert entry.detection == {k: v["detected"][run["detector"]] for k, v in run["attacks"].items()}
    detector = load_spoof_detector(SPOOF_DETECTOR)  # its sha256 checked
    assert detector.card["pretrained"]["detection"] == entry.detection
    assert detector.hparams == run["candidates"][run["detector"]]["hparams"]


def test_detect_spoof_fails_in_one_line(
    tmp_path: Path, spoof_detector: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    image = tmp_path / "photo.png"
    save_image(image, photo())
    camera = answering(CAMERAS, "Nimbus_N300", tmp_path / "camera.safetensors")
    known = ["--detector", camera, "--spoof-detector", spoof_detector]
    assert "no such file" in cli_error(capsys, monkeypatch, "detect-spoof", tmp_path / "x.jpg")
    assert "not a readable image" in cli_error(capsys, monkeypatch, "detect-spoof", text, *known)
    empty = tmp_path / "empty"
    empty.mkdir()
    line = cli_error(capsys, monkeypatch, "detect-spoof", image, *known, "--fingerprints", empty)
    assert "no fingerprints" in line
    swapped = ["--detector", camera, "--spoof-detector", camera]
    assert "not a spoof detector" in cli_error(capsys, monkeypatch, "detect-spoof", image, *swapped)
    line = cli_error(capsys, monkeypatch, "detect-spoof", image, *known, "--reference", text)
    assert "notes.jpg" in line
