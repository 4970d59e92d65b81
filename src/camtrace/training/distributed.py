"""DistributedDataParallel under ``torchrun``: the same command on one GPU or many.

``torchrun --nproc-per-node 4 -m camtrace.cli train ...`` sets RANK / WORLD_SIZE /
LOCAL_RANK; we join the process group (NCCL on GPUs, gloo on CPUs) and the training loop
shards each epoch's shuffle across ranks. No scheduler of our own.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env() -> tuple[int, int]:
    """Join the process group described by torchrun's environment, if any."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return world()


def local_device() -> torch.device:
    """This rank's GPU under torchrun, else the default CUDA device or the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def average_gradients(model: torch.nn.Module) -> None:
    """Mean of every parameter's gradient across ranks, in place (what DDP's reducer does,
    for losses it cannot hook: double backpropagation, input-gradient attacks)."""
    n = world()[1]
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= n


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, as DDP keeps them."""
    for b in model.buffers():
        dist.broadcast(b, 0)
