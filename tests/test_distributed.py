"""DistributedDataParallel on 2 CPU processes (gloo) equals one process with the global batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from camtrace.defenses import DefenseConfig, make_objective
from camtrace.defenses.gradnorm import DEFAULT_LAMBDA
from camtrace.models import build, load_detector
from camtrace.training.engine import TrainConfig, train
from test_training import model, toy_patches

CONFIG = {"lr": 0.015, "weight_decay": 1e-4, "precision": "fp32", "device": "cpu", "epochs": 2}


pytestmark = pytest.mark.slow  # each test starts two processes


def _worker(
    rank: int,
    world_size: int,
    init_file: str,
    out: str,
    defense: str = "none",
    epochs: int = 2,
    arch: str = "bondi2017",
) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        torch.manual_seed(0)
        train(
            build(arch, ["A_1", "B_2"], patch_size=64),
            toy_patches(),
            toy_patches(seed=1),
            TrainConfig(batch_size=16, **{**CONFIG, "epochs": epochs}),
            out,
            progress=False,
            objective=make_objective(DefenseConfig(kind=defense)),
        )
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_matches_single_process_global_batch(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "ddp")), nprocs=2, join=True)
    single = model()
    train(
        single,
        toy_patches(),
        toy_patches(seed=1),
        TrainConfig(batch_size=32, **CONFIG),
        tmp_path / "one",
        progress=False,
    )
    ddp = load_detector(tmp_path / "ddp" / "best.safetensors")
    one = load_detector(tmp_path / "one" / "best.safetensors")
    assert ddp.card["best_epoch"] == one.card["best_epoch"]
    for (name, a), b in zip(ddp.state_dict().items(), one.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), name


def test_ddp_with_the_gradient_norm_penalty_matches_single_process(tmp_path: Path) -> None:
    """Double backpropagation bypasses DDP's hooks: the loop averages gradients itself."""
    args = (2, str(tmp_path / "init"), str(tmp_path / "ddp"), "gradnorm", 1)
    mp.spawn(_worker, args=args, nprocs=2, join=True)
    single = model()
    train(
        single,
        toy_patches(),
        toy_patches(seed=1),
        TrainConfig(batch_size=32, **{**CONFIG, "epochs": 1}),
        tmp_path / "one",
        progress=False,
        objective=make_objective(DefenseConfig(kind="gradnorm")),
    )
    ddp = load_detector(tmp_path / "ddp" / "best.safetensors")
    assert ddp.card["defense"] == {"kind": "gradnorm", "lambda": DEFAULT_LAMBDA, "norm": "l2"}
    for (name, a), b in zip(ddp.state_dict().items(), single.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), name


def test_ddp_trains_a_detector_with_a_fixed_filter_buffer(tmp_path: Path) -> None:
    """tuama2016's only buffer is its fixed (3, 1, 5, 5) KV filter: channels-last gives it
    strides that DDP's buffer broadcast rejects unless the loop restores the standard layout."""
    args = (2, str(tmp_path / "init"), str(tmp_path / "ddp"), "none", 1, "tuama2016")
    mp.spawn(_worker, args=args, nprocs=2, join=True)
    assert load_detector(tmp_path / "ddp" / "best.safetensors").arch == "tuama2016"
