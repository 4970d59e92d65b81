"""The shared training loop: it learns, keeps the best epoch, and resumes exactly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from camtrace.models import build, load_detector
from camtrace.training.engine import PatchSet, TrainConfig, train
from camtrace.training.precision import resolve_precision
from camtrace.training.state import StaleTrainingState


def toy_patches(n: int = 192, seed: int = 0) -> PatchSet:
    """Two 'cameras': one adds a fixed high-frequency pattern, the other a different one.

    Sized to be learnt by a margin on every CPU: fp32 summation order differs between kernels
    (AVX2 vs AVX512), and at 96 patches and lr 0.015 one of them ended at 81% after 6 epochs;
    at these settings both reach 100% validation accuracy by epoch 4."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(60, 190, (n, 64, 64, 3), generator=g).float()
    y = torch.arange(n) % 2
    pattern = torch.zeros(2, 64, 64, 3)
    pattern[0, ::2] = 40
    pattern[1, :, ::2] = 40
    return PatchSet((base + pattern[y]).clamp(0, 255).to(torch.uint8), y)


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build("bondi2017", ["A_1", "B_2"], patch_size=64)


CONFIG = {"batch_size": 16, "lr": 0.01, "weight_decay": 1e-4, "precision": "fp32", "device": "cpu"}


def test_training_learns_and_keeps_best_checkpoint(tmp_path: Path) -> None:
    net = model()
    data = toy_patches()
    net.fit_preprocessing(data.patches)
    result = train(
        net, data, toy_patches(seed=1), TrainConfig(epochs=6, **CONFIG), tmp_path, progress=False
    )
    assert len(result.history) == 6
    best = min(result.history, key=lambda h: h["val_loss"])
    assert result.best_epoch == best["epoch"]
    assert best["val_acc"] > 0.85
    saved = load_detector(tmp_path / "best.safetensors")
    assert saved.card["best_epoch"] == result.best_epoch
    x = data.patches[:4].permute(0, 3, 1, 2).float()
    assert torch.allclose(saved(x), net.eval()(x), atol=1e-5)


def test_a_shorter_finished_run_continues_to_the_longer_runs_result(tmp_path: Path) -> None:
    data, val = toy_patches(), toy_patches(seed=1)
    straight = model()
    train(straight, data, val, TrainConfig(epochs=3, **CONFIG), tmp_path / "a", progress=False)
    killed = model()
    train(killed, data, val, TrainConfig(epochs=1, **CONFIG), tmp_path / "b", progress=False)
    resumed = model()  # a fresh process: nothing but the files survives
    result = train(
        resumed, data, val, TrainConfig(epochs=3, **CONFIG), tmp_path / "b", progress=False
    )
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("changed", "named"), [({"lr": 0.02}, "training.lr"), ({"epochs": 1}, "epochs (2 done, 1")]
)
def test_a_state_of_other_settings_is_never_resumed(
    tmp_path: Path, changed: dict, named: str
) -> None:
    data, val = toy_patches(n=32), toy_patches(n=32, seed=1)
    train(model(), data, val, TrainConfig(epochs=2, **CONFIG), tmp_path, progress=False)
    other = TrainConfig(**{"epochs": 2, **CONFIG, **changed})
    refused = model()
    before = [v.clone() for v in refused.state_dict().values()]
    with pytest.raises(StaleTrainingState, match=re.escape(named)):
        train(refused, data, val, other, tmp_path, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, refused.state_dict().values()))
    fresh = train(model(), data, val, other, tmp_path, resume=False, progress=False)
    assert len(fresh.history) == other.epochs


@pytest.mark.parametrize(("fast", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_precision_is_bf16_only_where_this_cpu_has_fast_bf16(
    monkeypatch: pytest.MonkeyPatch, fast: bool, expected: str
) -> None:
    monkeypatch.setattr("camtrace.hardware.fast_bf16", lambda device: fast)
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_cpu_training_keeps_freed_memory_where_glibc_allows() -> None:
    import platform

    from camtrace.training.memory import keep_freed_memory

    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is expected
    assert keep_freed_memory() is expected  # idempotent


def test_training_state_of_another_patch_size_is_a_one_line_error(tmp_path: Path) -> None:
    from camtrace.errors import CamtraceError
    from camtrace.training.state import load_state, save_state

    small = build("bondi2017", ["A_1", "B_2"], patch_size=64)
    info = {"epoch": 1, "run": {"training": {"lr": 0.1}}}  # the same settings, another network
    path = tmp_path / "state.safetensors"
    save_state(path, small, torch.optim.SGD(small.parameters(), 0.1), info)
    large = build("bondi2017", ["A_1", "B_2"], patch_size=128)
    opt = torch.optim.SGD(large.parameters(), 0.1)
    with pytest.raises(CamtraceError, match="training state of another network"):
        load_state(path, large, opt, info["run"], epochs=1)


CHILD = """
import os, signal, sys
import torch
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from test_training import CONFIG, model, toy_patches
from camtrace.training import state
from camtrace.training.engine import TrainConfig, train

writes, die_at = [0], {die_at}
real_save = state.save_file

def save_file(tensors, path, metadata=None):
    real_save(tensors, path, metadata=metadata)
    writes[0] += 1
    if writes[0] == die_at:  # the temporary file written, not yet renamed: SIGKILL now
        os.kill(os.getpid(), signal.SIGKILL)

state.save_file = save_file
train(model(), toy_patches(), toy_patches(seed=1), TrainConfig(epochs=3, **CONFIG),
      {out!r}, progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["mid-epoch", "mid-checkpoint-write"])
def test_a_sigkilled_training_resumes_to_the_uninterrupted_result(
    tmp_path: Path, moment: str, one_thread: None
) -> None:
    """A real ``SIGKILL`` of a training process, during the second epoch (the first epoch's
    state on disk) or while a checkpoint is being written (its temporary file complete, not
    yet renamed): a fresh process resumes and ends with the uninterrupted run's weights."""
    import signal
    import subprocess
    import sys
    import time

    data, val = toy_patches(), toy_patches(seed=1)  # one thread, as the child: one sum order
    straight = model()
    train(straight, data, val, TrainConfig(epochs=3, **CONFIG), tmp_path / "a", progress=False)
    out = tmp_path / "b"
    die_at = 2 if moment == "mid-checkpoint-write" else 0  # the state write of epoch 2
    code = CHILD.format(tests=str(Path(__file__).parent), out=str(out), die_at=die_at)
    child = subprocess.Popen([sys.executable, "-c", code])
    if moment == "mid-epoch":
        while not (out / "state.safetensors").is_file() and child.poll() is None:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=300) == -signal.SIGKILL
    resumed = model()
    result = train(resumed, data, val, TrainConfig(epochs=3, **CONFIG), out, progress=False)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
