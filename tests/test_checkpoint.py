"""Checkpoints: safetensors + card round trip, and refusal of mismatches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from camtrace.errors import CamtraceError
from camtrace.models import build, load_detector, read_card, save_detector
from camtrace.models.svm import OvOLinearSVM

CLASSES = ["Alpha_A1", "Beta_B2", "Gamma_G3"]


def trained_like(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    det = build("bondi2017", CLASSES)
    det.fit_preprocessing(torch.randint(0, 256, (8, 64, 64, 3), dtype=torch.uint8))
    rng = np.random.default_rng(seed)
    det.svm = OvOLinearSVM.fit(rng.normal(size=(60, 128)), np.repeat(np.arange(3), 20), 3, C=1.0)
    return det


def test_round_trip_gives_identical_outputs_and_card(tmp_path: Path) -> None:
    det = trained_like().eval()
    path = save_detector(det, tmp_path / "det", training={"epochs": 3})
    assert path.suffix == ".safetensors"
    back = load_detector(path)
    x = torch.rand(3, 3, 64, 64) * 255
    assert torch.equal(det(x), back(x))
    assert torch.equal(det.svm(det.embed(x)), back.svm(back.embed(x)))
    card = read_card(path)
    assert card["arch"] == "bondi2017" and card["classes"] == CLASSES and card["svm"] is True
    assert card["training"] == {"epochs": 3}


def test_mismatched_arch_or_classes_is_refused(tmp_path: Path) -> None:
    path = save_detector(trained_like(), tmp_path / "det.safetensors")
    with pytest.raises(CamtraceError, match="not densenet40"):
        load_detector(path, arch="densenet40")
    with pytest.raises(CamtraceError, match="classes"):
        load_detector(path, classes=["Alpha_A1", "Beta_B2"])


def test_foreign_and_corrupt_files_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CamtraceError, match="not a camtrace checkpoint"):
        load_detector(foreign)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(CamtraceError, match="not a readable"):
        load_detector(corrupt)
    with pytest.raises(CamtraceError, match="not found"):
        load_detector(tmp_path / "missing.safetensors")


def test_weights_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    path = save_detector(trained_like(), tmp_path / "det.safetensors")
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(path))
    state["ip1.weight"] = torch.zeros(5, 5)
    save_file(state, str(path), metadata=meta)
    with pytest.raises(CamtraceError, match="do not fit"):
        load_detector(path)


def test_save_is_atomic_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_detector(trained_like(), tmp_path / "det.safetensors")
    before = path.read_bytes()
    import camtrace.models.checkpoint as ckpt

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", boom)
    with pytest.raises(OSError):
        save_detector(trained_like(1), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.safetensors"]
