"""Resumable training state in safetensors (never pickle).

Tensors (model, optimiser buffers, RNG state) go in the file; everything else (epoch,
history, scheduler and optimiser hyper-parameters) goes in its JSON metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file

from camtrace.errors import CamtraceError
from camtrace.io import atomic_path

_META = "camtrace_train_state"


def save_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    info: dict[str, Any],
) -> None:
    """Write model weights, optimiser state and ``info`` (JSON-able) atomically."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, slot in opt["state"].items():
        for key, value in slot.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"info": info, "param_groups": opt["param_groups"], "optim_scalars": scalars}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META: json.dumps(meta)})


class StaleTrainingState(CamtraceError):
    """A saved training state made with other settings, or another network, than the ones
    asked for now."""


def load_state(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    run: dict[str, Any],
    epochs: int,
) -> dict[str, Any]:
    """Restore what :func:`save_state` wrote, once :func:`check_resumable` has found it made
    with the settings ``run`` and at most ``epochs`` epochs; returns its ``info``. A state of
    other settings is refused before anything is copied into ``model`` or ``optimizer``."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[_META])
        check_resumable(path, meta["info"], run, epochs)
        tensors = load_file(str(path))
    except StaleTrainingState:
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable state file gets the same advice
        raise CamtraceError(
            f"{path}: unreadable training state ({type(e).__name__}); delete it to start afresh"
        ) from None
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    except RuntimeError:  # another architecture, class list or patch size
        raise StaleTrainingState(
            f"{path}: training state of another network (architecture, classes or patch size "
            "differ); delete it or train into another folder"
        ) from None
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, slot in meta["optim_scalars"].items():
        state.setdefault(int(idx), {}).update(slot)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return meta["info"]


def check_resumable(path: Path, info: dict[str, Any], run: dict[str, Any], epochs: int) -> None:
    """Refuse to resume a state of other settings, or one trained past ``epochs``, so a
    cached run can never pass for the config asked for."""
    saved = info.get("run")
    if saved is None:
        raise StaleTrainingState(f"{path}: training state of an older camtrace; delete it")
    differ = sorted(
        f"{part}.{k}"
        for part in run
        for k in {*(run[part] or {}), *(saved.get(part) or {})}
        if (run[part] or {}).get(k) != (saved.get(part) or {}).get(k)
    )
    if info["epoch"] > epochs:
        differ.append(f"epochs ({info['epoch']} done, {epochs} asked)")
    if differ:
        raise StaleTrainingState(
            f"{path}: training state of other settings ({', '.join(differ)}); "
            "delete it or train into another folder"
        )
