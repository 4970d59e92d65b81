"""One training loop for every detector (Bondi 2017 Sec. II defaults).

SGD with momentum, step-halved learning rate, best validation loss kept, resumable after a
kill with the same result as an uninterrupted run (the shuffle of epoch ``e`` depends only
on ``(seed, e)``). Patches stay on the device as uint8 and are cast per batch. Under
``torchrun`` the same loop runs as PyTorch DistributedDataParallel.

The loss of a minibatch is an :data:`Objective` (default: :func:`cross_entropy`), so a
training-time defence (:mod:`camtrace.defenses`) changes the loss, not the loop. An objective
gets the plain module, never the DDP wrapper: DDP's gradient hooks do not support double
backpropagation (pytorch/pytorch#63812, #63929) and an attack's input-gradient passes through
a DDP module would leave its reducer waiting for a backward that never comes. Under DDP with
an objective the loop averages the gradients across ranks itself after ``backward`` and
broadcasts rank 0's buffers (BatchNorm statistics) after each step, which is what DDP does.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from camtrace.errors import CamtraceError
from camtrace.io import write_json
from camtrace.models.base import Detector
from camtrace.models.checkpoint import load_detector, save_detector
from camtrace.training.config import TrainConfig
from camtrace.training.distributed import (
    average_gradients,
    barrier,
    broadcast_buffers,
    local_device,
    world,
)
from camtrace.training.memory import keep_freed_memory
from camtrace.training.precision import (
    autocast,
    environment,
    resolve_precision,
    to_device_format,
)
from camtrace.training.state import load_state, save_state

STATE_FILE = "state.safetensors"
BEST_FILE = "best.safetensors"

Objective = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""The loss of one minibatch: ``objective(model, x, labels)``, ``x`` float pixels in [0, 255]
(N, 3, H, W), run under the training precision's autocast. An objective may carry a ``card``
(a JSON-able dict: what it is and its parameters), recorded in the checkpoint card as
``defense``."""


def cross_entropy(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The default objective: mean cross-entropy of the minibatch."""
    return F.cross_entropy(model(x).float(), labels)


@dataclass
class PatchSet:
    """uint8 patches (N, H, W, 3) and integer labels (N,), kept together."""

    patches: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if (
            self.patches.dtype != torch.uint8
            or self.patches.ndim != 4
            or self.patches.shape[-1] != 3
        ):
            raise ValueError("patches must be uint8 (N, H, W, 3)")
        if len(self.patches) != len(self.labels):
            raise ValueError("patches and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> PatchSet:
        return PatchSet(self.patches.to(device), self.labels.to(device))


@dataclass
class TrainResult:
    best_epoch: int
    best_val_loss: float
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint: Path | None = None
    patches_per_second: float = 0.0


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (the papers') or Adam (``optimizer: adam``, for short budgets)."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    raise CamtraceError(f"optimizer must be sgd or adam, not {config.optimizer!r}")


def pick_device(name: str = "auto") -> torch.device:
    return local_device() if name == "auto" else torch.device(name)


def as_input(patches_uint8: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 255], the detector contract."""
    return to_device_format(patches_uint8.permute(0, 3, 1, 2).float(), channels_last)


def evaluate_loss(
    model: Detector, data: PatchSet, config: TrainConfig, precision: str, device: torch.device
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data`` (eval mode, no grad)."""
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(data), config.eval_batch_size):
            x = as_input(data.patches[start : start + config.eval_batch_size], config.channels_last)
            y = data.labels[start : start + config.eval_batch_size]
            with autocast(precision, device):
                logits = model(x)
            total += F.cross_entropy(logits.float(), y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    return total / len(data), correct / len(data)


# what a resumed run must share with the run that saved the state (epochs may grow)
_RESUME_KEYS = (
    *("batch_size", "lr", "momentum", "weight_decay"),
    *("lr_step_epochs", "lr_gamma", "optimizer", "seed"),
)


def run_settings(
    config: TrainConfig, card: dict[str, Any] | None, objective: Objective | None
) -> dict[str, Any]:
    """The settings a training state belongs to: the hyper-parameters that change the
    weights, the training data (patches and manifest digest) and the defence."""
    data = {k: v for k, v in (card or {}).get("data", {}).items() if k != "patch_store"}
    run = {
        "training": {k: getattr(config, k) for k in _RESUME_KEYS},
        "data": data,
        "patches": (card or {}).get("patches"),
        "defense": getattr(objective, "card", None),
    }
    if config.init:  # only when set: states saved before the key existed still resume
        run["training"]["init"] = config.init
    return json.loads(json.dumps(run))  # as the state's JSON metadata will give it back


def train(
    model: Detector,
    train_set: PatchSet,
    val_set: PatchSet,
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    card: dict[str, Any] | None = None,
    objective: Objective | None = None,
) -> TrainResult:
    """Train ``model`` in place, keeping the weights of the best validation loss.

    Writes ``state.safetensors`` (resumable state) after every epoch and
    ``best.safetensors`` (a detector checkpoint with its card) when validation improves.
    ``objective`` (default: :func:`cross_entropy`) is the minibatch loss; validation is
    always the plain cross-entropy, so the best epoch is chosen on clean data.
    """
    out_dir = Path(out_dir)
    rank, n_ranks = world()
    device = pick_device(config.device)
    precision = resolve_precision(config.precision, device, model.spec)
    if device.type == "cpu":
        keep_freed_memory()
    torch.manual_seed(config.seed)
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
        # a (C, 1, k, k) filter buffer in channels-last strides fails DDP's buffer broadcast
        for buffer in model.buffers():
            buffer.data = buffer.data.clone(memory_format=torch.contiguous_format)
    train_set, val_set = train_set.to(device), val_set.to(device)
    optimizer = make_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    net: torch.nn.Module = model
    sync_by_hand = objective is not None and n_ranks > 1  # see the module docstring
    if n_ranks > 1 and objective is None:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    run = run_settings(config, card, objective)
    info: dict[str, Any] = {
        "epoch": 0,
        "best_val_loss": math.inf,
        "best_epoch": -1,
        "history": [],
        "run": run,
    }
    state_path = out_dir / STATE_FILE
    if resume and state_path.is_file():
        info = load_state(state_path, model, optimizer, run, config.epochs)
    card = {
        **(card or {}),
        "training": {**config.model_dump(), "precision": precision},
        "environment": environment(device, precision),
        **({"defense": getattr(objective, "card", {})} if objective is not None else {}),
    }
    loss_of = objective or cross_entropy

    steps = len(train_set) // n_ranks // config.batch_size + 1
    seen, t0 = 0, time.perf_counter()
    bar = Progress(
        TextColumn("[bold]train[/] epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeRemainingColumn(),
        disable=not progress or rank != 0,
        transient=True,
    )
    with bar:
        for epoch in range(info["epoch"], config.epochs):
            lr = config.lr * config.lr_gamma ** (epoch // config.lr_step_epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            order = torch.randperm(
                len(train_set),
                generator=torch.Generator().manual_seed(config.seed * 100003 + epoch),
            ).to(device)
            # equal shards, so every rank runs the same number of steps (DDP needs it)
            order = order[: len(order) - len(order) % n_ranks][rank::n_ranks]
            task = bar.add_task("", total=steps, epoch=epoch + 1, loss=float("nan"))
            started = time.perf_counter()
            model.train()
            running = 0.0
            for i, start in enumerate(range(0, len(order), config.batch_size)):
                idx = order[start : start + config.batch_size]
                x = as_input(train_set.patches[idx], config.channels_last)
                optimizer.zero_grad(set_to_none=True)
                with autocast(precision, device):
                    loss = loss_of(net, x, train_set.labels[idx])
                scaler.scale(loss).backward()
                if sync_by_hand:
                    average_gradients(model)
                scaler.step(optimizer)
                scaler.update()
                model.project_constraints()
                if sync_by_hand:
                    broadcast_buffers(model)
                running += (loss.item() - running) / (i + 1)
                seen += len(idx)
                bar.update(task, advance=1, loss=running)
            bar.remove_task(task)
            val_loss, val_acc = evaluate_loss(model, val_set, config, precision, device)
            record = {
                "epoch": epoch + 1,
                "lr": lr,
                "train_loss": running,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "seconds": round(time.perf_counter() - started, 1),  # summed over sittings
            }
            info["history"].append(record)
            info["epoch"] = epoch + 1
            improved = val_loss < info["best_val_loss"]  # identical on every rank
            if improved:
                info["best_val_loss"], info["best_epoch"] = val_loss, epoch + 1
            if rank == 0:
                if progress:
                    bar.console.print(
                        f"epoch {epoch + 1:>3}/{config.epochs}  lr {lr:.4g}  train loss "
                        f"{running:.4f}"
                        f"  val loss {val_loss:.4f}  val acc {val_acc:.2%}"
                    )
                if improved:
                    save_detector(model, out_dir / BEST_FILE, **card, best_epoch=epoch + 1)
                save_state(state_path, model, optimizer, info)
                write_json(out_dir / "history.json", info["history"])
            barrier()
    elapsed = time.perf_counter() - t0
    if (out_dir / BEST_FILE).is_file():
        best = load_detector(out_dir / BEST_FILE, arch=model.arch, classes=model.classes)
        model.load_state_dict(best.state_dict())
    return TrainResult(
        best_epoch=info["best_epoch"],
        best_val_loss=info["best_val_loss"],
        history=info["history"],
        checkpoint=out_dir / BEST_FILE,
        patches_per_second=seen * n_ranks / elapsed if seen else 0.0,
    )
