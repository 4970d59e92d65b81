"""Generator checkpoints and resumable training state, in safetensors (never pickle).

A generator checkpoint is one file: the weights plus the JSON card in its metadata under the
same key as detector checkpoints (``camtrace info`` prints either). The card says what the
generator is (``kind: generator``, method, hyper-parameters, patch size), what it attacks
(target class, the classes and weight digests of the detector(s) it was trained against),
what it learnt from (data digests, training settings, last validation) and what computed it
(environment, camtrace version). Loading refuses, in one line, a file that is missing, not a
checkpoint, a detector, another method's generator, or trained for other classes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from camtrace.attacks.generative.methods import get_method
from camtrace.errors import CamtraceError
from camtrace.io import atomic_path
from camtrace.models.checkpoint import CARD_KEY, GENERATOR_KIND, read_card
from camtrace.models.zoo import resolve_checkpoint

STATE_KEY = "camtrace_generator_state"
STORAGE = {"float32": torch.float32, "float16": torch.float16}  # how weights may be stored


def weights_digest(module: nn.Module) -> str:
    """sha256 of a module's state (names, shapes, dtypes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def array_digest(array: np.ndarray | torch.Tensor) -> str:
    """sha256 of an array's shape, dtype and bytes (the data a generator learnt from)."""
    a = np.ascontiguousarray(array.cpu().numpy() if torch.is_tensor(array) else array)
    return hashlib.sha256(f"{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest()


def save_generator(
    generator: nn.Module, path: str | Path, card: dict[str, Any], storage: str = "float32"
) -> Path:
    """Write weights + card (``kind: generator``) atomically to ``path`` (``.safetensors``);
    ``storage``: see :func:`save_weights`."""
    return save_weights(generator, path, {**card, "kind": GENERATOR_KIND}, storage)


def save_weights(
    module: nn.Module, path: str | Path, card: dict[str, Any], storage: str = "float32"
) -> Path:
    """Write a module's weights + ``card`` atomically to ``path`` (``.safetensors``), its
    floating-point tensors stored as ``storage`` (``float16`` halves a file the zoo could not
    ship otherwise; ``load_state_dict`` widens them back into a float32 module), recorded in
    the card."""
    if storage not in STORAGE:
        raise CamtraceError(f"storage={storage!r}: use one of {', '.join(STORAGE)}")
    path = Path(path).with_suffix(".safetensors")
    tensors = {
        k: (v.to(STORAGE[storage]) if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in module.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={CARD_KEY: json.dumps({**card, "storage": storage})})
    return path


def generator_path(path_or_name: str | Path) -> Path:
    """A generator checkpoint: the file itself, or the verified file of a trained
    generator's name (``mislgan-Nimbus_N300``: camtrace models)."""
    path = Path(path_or_name)
    if not path.is_file() and (path.suffix or os.sep in str(path_or_name)):
        raise CamtraceError(
            f"{path}: generator checkpoint not found; train one with "
            "camtrace.attacks.generative.train_generator"
        )
    return resolve_checkpoint(path_or_name, generators=True)


def read_generator_card(path: str | Path) -> dict[str, Any]:
    """The card of a generator checkpoint (a file, or a trained generator's name such as
    ``mislgan-Nimbus_N300``, sha256-checked), checked to be one."""
    path = generator_path(path)
    card = read_card(path)
    if card.get("kind") != GENERATOR_KIND:
        raise CamtraceError(
            f"{path}: a {card.get('arch', 'non-generator')} detector checkpoint, not a "
            "generator; pass it as the detector (--detector) and a checkpoint written by "
            "train_generator as the generator (--generator)"
        )
    return card


def load_generator(
    path: str | Path,
    method: str | None = None,
    classes: list[str] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Rebuild a generator (eval mode, its card as ``.card``), refusing a mismatch: ``method``
    and the detector's ``classes``, when given, must be the card's."""
    path = generator_path(path)
    card = read_generator_card(path)
    if method is not None and get_method(method).name != card["method"]:
        raise CamtraceError(
            f"{path}: a {card['method']} generator, not {method}; "
            f"use make_attack('{card['method']}', generator=...)"
        )
    check_classes(card, classes, path)
    generator = get_method(card["method"]).build(card["hparams"])
    try:
        generator.load_state_dict(load_file(str(path)), strict=True)
    except (RuntimeError, SafetensorError) as e:
        first = str(e).splitlines()[0]
        raise CamtraceError(
            f"{path}: weights do not fit a {card['method']} generator ({first}); "
            "the file is corrupt or from another camtrace version"
        ) from None
    generator.card = card
    return generator.to(device).eval()


def check_classes(card: dict[str, Any], classes: list[str] | None, where: str | Path) -> None:
    """One-line error if a generator trained against ``card['classes']`` meets a detector
    with other ``classes`` (its target index would mean another camera), or if a generator
    trained with no detector (SpoC: its card has no classes) spoofs a camera model that is
    not among the detector's ``classes``."""
    if classes is not None and "classes" not in card and card["target"] not in classes:
        raise CamtraceError(
            f"{where}: this {card['method']} generator spoofs {card['target']}, not one of the "
            f"detector's classes {list(classes)}; train a {card['method']} generator for one"
        )
    if classes is not None and "classes" in card and list(classes) != list(card["classes"]):
        raise CamtraceError(
            f"{where}: generator trained against a detector of classes {card['classes']}, "
            f"this detector has {list(classes)}; train a generator against this detector"
        )


def save_state(
    path: Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    info: dict[str, Any],
) -> None:
    """Everything a resumed training needs, atomically: weights (BatchNorm statistics
    included), optimiser moments and steps, and ``info`` (JSON: iteration, logs, config)."""
    tensors: dict[str, torch.Tensor] = {}
    groups: dict[str, Any] = {}
    for name, module in modules.items():
        for k, v in module.state_dict().items():
            tensors[f"model.{name}.{k}"] = v.detach().cpu().contiguous()
    for name, optimizer in optimizers.items():
        state = optimizer.state_dict()
        for idx, slot in state["state"].items():
            for key, value in slot.items():
                tensors[f"optim.{name}.{idx}.{key}"] = (
                    torch.as_tensor(value).detach().cpu().contiguous().clone()
                )
        groups[name] = state["param_groups"]
    meta = {"info": info, "param_groups": groups}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={STATE_KEY: json.dumps(meta)})


def load_state(
    path: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]
) -> dict[str, Any]:
    """Restore what :func:`save_state` wrote into ``modules`` and ``optimizers``; its info."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[STATE_KEY])
        tensors = load_file(str(path))
        for name, module in modules.items():
            prefix = f"model.{name}."
            module.load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
        for name, optimizer in optimizers.items():
            state: dict[int, dict[str, torch.Tensor]] = {}
            prefix = f"optim.{name}."
            for key, value in tensors.items():
                if key.startswith(prefix):
                    idx, _, slot = key[len(prefix) :].partition(".")
                    state.setdefault(int(idx), {})[slot] = value
            optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"][name]})
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as e:
        raise CamtraceError(
            f"{path}: unreadable generator training state ({type(e).__name__}); "
            "delete it or pass resume=False to start afresh"
        ) from None
    return meta["info"]
