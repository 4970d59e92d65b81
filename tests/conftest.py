"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import Iterator

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
