"""Experiment configs: built-ins load, each detector gets its native patch protocol, and
``split.splits: N`` repeats the identification on N splits and reports their spread."""

from __future__ import annotations

import json

import numpy as np
import pytest

from camtrace.errors import CamtraceError
from camtrace.workflows.config import parse_config
from camtrace.workflows.experiment import builtin_configs, load_config, run_experiment
from camtrace.workflows.identification import detector_specs, head_accuracy, spread
from tiny_runs import tiny_experiment


def test_builtin_configs_load() -> None:
    assert {"quickstart", "bondi2017", "zoo"} <= set(builtin_configs())
    for name in builtin_configs():
        assert load_config(name).name == name


def test_zoo_detectors_use_their_native_patches() -> None:
    specs = {s.arch: s.protocol.name for s in detector_specs(parse_config(load_config("zoo")))}
    assert specs == {
        "bondi2017": "bondi",
        "marra2017": "bondi",
        "densenet40": "guera",
        "mislnet": "gan",
        "tuama2016": "gan",
        "xception": "gan",
        "inceptionv3": "gan",
    }
    (default,) = detector_specs(parse_config({}))
    assert (default.arch, default.protocol.name, default.protocol.size) == (
        "bondi2017",
        "bondi",
        64,
    )


def test_detector_train_and_svm_override_the_top_level_key_by_key() -> None:
    config = parse_config(
        {
            "seed": 7,
            "train": {"epochs": 3, "lr": 0.1},
            "svm": {"Cs": [1.0]},
            "patches": {"count": 4},
            "detectors": ["bondi2017", {"arch": "mislnet", "train": {"lr": 0.5}}],
        }
    )
    bondi, mislnet = detector_specs(config)
    assert (bondi.train.epochs, bondi.train.lr, bondi.train.seed) == (3, 0.1, 7)
    assert (mislnet.train.epochs, mislnet.train.lr) == (3, 0.5)
    assert bondi.svm.Cs == mislnet.svm.Cs == (1.0,)
    assert (bondi.protocol.name, bondi.protocol.count) == ("bondi", 4)  # its own protocol
    assert (mislnet.protocol.name, mislnet.protocol.count) == ("gan", 4)


def test_bad_configs_are_refused_in_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndetektor: {arch: bondi2017}\n")
    with pytest.raises(CamtraceError, match="detektor: unknown key; known: name, seed"):
        load_config(bad)
    with pytest.raises(CamtraceError, match="no such config"):
        load_config("no-such-config")
    bad.write_text("name: [unclosed\n")
    with pytest.raises(CamtraceError, match="not valid YAML"):
        load_config(bad)


def test_spread_of_split_accuracies() -> None:
    s = spread([0.5, 0.75, 1.0])
    assert s["mean"] == pytest.approx(0.75) and s["std"] == pytest.approx(0.25)  # ddof 1
    assert (s["min"], s["max"]) == (0.5, 1.0)
    assert spread([0.6])["std"] == 0.0


def test_two_splits_report_mean_and_spread(tmp_path, one_thread) -> None:
    config = {
        "name": "tiny-splits",
        "seed": 5,
        "workdir": str(tmp_path / "work"),
        "data": {"source": "simulate", "preset": "tiny", "shots": 6, "size": [128, 192]},
        "split": {"protocol": "random", "fractions": [0.5, 0.25, 0.25], "splits": 2},
        "patches": {"protocol": "bondi", "count": 4},
        "train": {"epochs": 1},
        "svm": {"enabled": False},
        "detectors": ["bondi2017", {"arch": "marra2017", "svm": {"enabled": True}}],
        "evaluate": {"voting_ks": [1, 4]},
        "audit": True,
    }
    metrics = run_experiment(config, runs_dir=tmp_path / "runs", progress=False, log=lambda _: None)
    run_dir = tmp_path / "runs" / "tiny-splits"
    second = json.loads((run_dir / "metrics.json").read_text())["splits"]
    assert second == json.loads(json.dumps(metrics["splits"]))
    assert metrics["splits"]["seeds"] == [5, 6]
    first_patch, first_image = head_accuracy(metrics["identification"])
    summary = metrics["splits"]["detectors"]["bondi2017"]
    for key, first in (("single_patch", first_patch), ("image", first_image)):
        s = summary[key]
        assert s["values"][0] == first  # the first split is the run's own
        assert s["min"] <= s["mean"] <= s["max"]
        assert s["mean"] == pytest.approx(sum(s["values"]) / 2)
        assert s["std"] == pytest.approx(abs(s["values"][0] - s["values"][1]) / 2**0.5)
    # Marra 2017's SPAM baseline beside the CNN: SVMs only, its own checkpoint
    marra = metrics["detectors"]["marra2017"]
    assert marra["identification"]["primary"] == "svm" and "cnn" not in marra["identification"]
    assert marra["best_epoch"] == 0 and marra["svm"]["C"] > 0
    assert set(metrics["splits"]["detectors"]) == {"bondi2017", "marra2017"}
    assert (run_dir / "detector.safetensors").is_file()
    assert (run_dir / "marra2017.safetensors").is_file()
    manifests = [(run_dir / "manifest.csv"), (run_dir / "split-1" / "manifest.csv")]
    assert all(m.is_file() for m in manifests)
    assert manifests[0].read_text() != manifests[1].read_text()  # another split
    assert "Over 2 random splits" in (run_dir / "report.html").read_text()
    # audit: true checks the data first; tiny's models differ in JPEG quality and subsampling
    audit = json.loads((run_dir / "audit" / "audit.json").read_text())
    assert metrics["audit"]["flags"] == audit["flags"] and audit["tables_identify"] == 3
    assert "Data audit" in (report := (run_dir / "report.html").read_text())
    assert "Camera traces alone" in report


def test_an_edited_config_retrains_its_cached_detector(tmp_path, one_thread) -> None:
    config = tiny_experiment(tmp_path, "tiny-edit", train={"epochs": 2})
    run_experiment(config, runs_dir=tmp_path / "runs", progress=False, log=lambda _: None)
    lines: list[str] = []
    edited = {**config, "train": {"epochs": 1}}
    metrics = run_experiment(edited, runs_dir=tmp_path / "runs", progress=False, log=lines.append)
    assert any("epochs (2 done, 1 asked)" in line and "afresh" in line for line in lines)
    assert metrics["detectors"]["bondi2017"]["best_epoch"] == 1


def test_spoof_section_writes_the_photo_and_reads_it_back(tmp_path, one_thread) -> None:
    """The spoof: section attacks a whole eval photo, writes a PNG a reader identifies as the
    metrics say (identified again here, independently of the run), and reports it."""
    from skimage.metrics import peak_signal_noise_ratio

    from camtrace.data.images import load_rgb
    from camtrace.models import load_detector
    from camtrace.models.inference import identify

    config = tiny_experiment(
        tmp_path, "spoofed", spoof={"method": "pgd", "eps": 8, "params": {"steps": 10}}
    )
    metrics = run_experiment(config, runs_dir=tmp_path / "runs", progress=False, log=print)
    (photo,) = metrics["spoof"]["photos"]
    classes = metrics["detectors"]["bondi2017"]["classes"]
    before = photo["before"]["model"]
    assert photo["target"] == classes[(classes.index(before) + 1) % len(classes)]
    detector = load_detector(metrics["detectors"]["bondi2017"]["checkpoint"])
    assert identify(detector, photo["saved"]).model == photo["after"]["model"]
    clean, spoofed = load_rgb(photo["source"]), load_rgb(photo["saved"])
    assert np.abs(spoofed.astype(int) - clean).max() <= 8
    assert photo["psnr"] == pytest.approx(peak_signal_noise_ratio(clean, spoofed), abs=0.01)
    assert "Whole photos spoofed" in (tmp_path / "runs" / "spoofed" / "report.html").read_text()
    assert photo["open_set"] is None  # a detector trained in the run has no calibration


@pytest.mark.slow
def test_spoof_section_of_a_calibrated_detector_gives_identifys_open_set_answer(
    tmp_path, one_thread
) -> None:
    """With the detector calibrated (camtrace calibrate), the spoof: section's photo carries
    the answer Detector.identify gives the written file with the open set on, and the docs'
    table counts it."""
    from camtrace.data.patch_store import PatchStore
    from camtrace.models import load_detector
    from camtrace.models.calibration import calibrate_openset
    from camtrace.models.openset import save_openset, sidecar_path
    from camtrace.workflows.tables import spoof_table

    config = tiny_experiment(
        tmp_path, "spoofed", spoof={"method": "pgd", "eps": 8, "params": {"steps": 10}}
    )
    metrics = run_experiment(config, runs_dir=tmp_path / "runs", progress=False, log=print)
    entry = metrics["detectors"]["bondi2017"]
    checkpoint = entry["checkpoint"]
    calibration = calibrate_openset(checkpoint, PatchStore.open(entry["patch_store"]), frr=0.5)
    save_openset(calibration, sidecar_path(checkpoint))
    metrics = run_experiment(config, runs_dir=tmp_path / "runs", progress=False, log=print)
    (photo,) = metrics["spoof"]["photos"]
    answer = load_detector(checkpoint).identify(photo["saved"]).model
    assert photo["open_set"] == answer
    table = spoof_table(metrics)
    assert f"{int(answer == 'unknown')} answered unknown with the open set on" in table
