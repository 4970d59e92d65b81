"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Small models on a shared 2-core machine: one thread avoids OpenMP spin contention
    (measured 60x slower backward passes with 2 threads under load). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def attacks_judged_in_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    """An attack's ``precision="auto"`` times bf16 against fp32 on this machine, so a loaded
    or another machine could change what a test asserts: in tests "auto" measures no speed-up
    and runs fp32. The tests of the resolver itself patch the timing as they need."""
    monkeypatch.setattr("camtrace.attacks.precision.bf16_speedup", lambda *_: 0.0)
    monkeypatch.setattr("camtrace.attacks.precision._measured", {})  # nothing timed is kept


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The CLI's stages once for the session: a tiny simulated dataset, split, cut and a
    detector trained one epoch (the CLI and defence tests share it)."""
    from tiny_runs import ok

    root = tmp_path_factory.mktemp("cli")
    data = root / "sim"
    ok("simulate", "--preset", "tiny", "--out", data, "--shots", "8", "--size", "192", "256",
       "--quiet")  # fmt: skip
    ok("split", data / "manifest.csv", "--eval-scene-frac", "0.25", "--val-scene-frac", "0.25")
    ok("patches", data / "manifest.csv", "--out", root / "patches", "--quiet")
    ok("train", root / "patches", "--out", root / "train", "--epochs", "1", "--quiet")
    return {
        "root": root,
        "data": data,
        "store": root / "patches",
        "ckpt": root / "train" / "detector.safetensors",
    }
