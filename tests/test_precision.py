"""Mixed precision keeps the camera traces: residual layers in fp32, auto per spec, environment."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from camtrace import hardware
from camtrace.hardware import cpu_model_and_isa
from camtrace.models import build, model_spec, read_card
from camtrace.training.engine import PatchSet, TrainConfig, train
from camtrace.training.precision import environment, resolve_precision

pytestmark = pytest.mark.usefixtures("one_thread")


def textured(n: int, size: int, seed: int) -> torch.Tensor:
    """Pixels of hundreds with a texture of tens, (N, 3, size, size) float."""
    g = torch.Generator().manual_seed(seed)
    return (150 + 60 * torch.rand(n, 3, size, size, generator=g)).round()


def test_residual_layers_under_autocast_equal_their_fp32_output() -> None:
    """Explicit bf16 autocast, which every CPU runs (slowly without AVX512-BF16)."""
    torch.manual_seed(0)
    x = textured(2, 40, seed=1)
    tuama, misl = build("tuama2016", ["A", "B"], 40), build("mislnet", ["A", "B"], 40)
    kv_fp32, cc_fp32 = tuama.preprocess(x), misl.constrained(x)
    seen = []  # what Tuama's first learned conv receives inside embed
    tuama.body[0].register_forward_hook(lambda m, args, out: seen.append(args[0]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tuama.embed(x)
        cc_auto = misl.constrained(x)
        unprotected = F.conv2d(x, tuama.kv, groups=3)
    assert seen[0].dtype == cc_auto.dtype == torch.float32
    assert torch.equal(seen[0], kv_fp32) and torch.equal(cc_auto, cc_fp32)
    # what the fp32 region prevents: the bf16 taps of the zero-sum KV filter leak the image
    assert (unprotected.float() - kv_fp32).abs().max() > 0.1


def faint_traces(n: int, seed: int) -> PatchSet:
    """Two 'cameras' that differ by a 2 grey-level pattern on flat pixels of hundreds."""
    g = torch.Generator().manual_seed(seed)
    level = torch.randint(150, 250, (n, 1, 1, 1), generator=g)
    base = (level + torch.randint(0, 3, (n, 64, 64, 3), generator=g)).float()
    y = torch.arange(n) % 2
    pattern = torch.zeros(2, 64, 64, 3)
    pattern[0, ::2] = 2.0
    pattern[1, :, ::2] = 2.0
    return PatchSet((base + pattern[y]).clamp(0, 255).to(torch.uint8), y)


def test_auto_keeps_fp32_for_an_architecture_that_fails_the_check() -> None:
    cpu = torch.device("cpu")
    unsafe = model_spec("bondi2017")  # failed the check (see its spec)
    assert not unsafe.mixed_precision
    assert resolve_precision("auto", cpu, unsafe) == "fp32"
    assert resolve_precision("bf16", cpu, unsafe) == "bf16"  # asked for explicitly
    safe = model_spec("tuama2016")
    assert resolve_precision("auto", cpu, safe) == resolve_precision("auto", cpu)


def test_environment_goes_into_the_checkpoint_card(tmp_path: Path) -> None:
    env = environment(torch.device("cpu"), "fp32")
    assert env["isa"] == cpu_model_and_isa()[1] and env["processor"] == cpu_model_and_isa()[0]
    assert env["threads"] == torch.get_num_threads() and env["precision"] == "fp32"
    data = faint_traces(32, seed=2)
    torch.manual_seed(0)
    det = build("bondi2017", ["A_1", "B_2"])
    config = TrainConfig(epochs=1, batch_size=16, precision="fp32", device="cpu")
    train(det, data, data, config, tmp_path, progress=False)
    card = read_card(tmp_path / "best.safetensors")
    assert card["environment"] == {**env, "threads": card["environment"]["threads"]}
    assert card["environment"]["threads"] == 1  # the one_thread fixture


def test_a_cpu_without_bf16_instructions_is_ruled_out_without_timing(monkeypatch) -> None:
    """On AVX2 one bf16 matmul of the probe takes about a second: it must not run there."""

    def no_probe() -> float:
        raise AssertionError("a CPU without bf16 instructions must not time bf16")

    monkeypatch.setattr("camtrace.hardware.cpu_model_and_isa", lambda: ("AMD EPYC", "AVX2"))
    monkeypatch.setattr("camtrace.hardware.cpu_bf16_speedup", no_probe)
    assert not hardware.fast_bf16(torch.device("cpu"))
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
