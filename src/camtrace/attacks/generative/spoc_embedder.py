"""SpoC's embedder, pre-trained once and reused (Cozzolino et al. 2021 Sec. 5): the triplet
loss on patches of many camera models (SpoC: 600 models, Adam lr 1e-4 with default moments,
batches of 80 patches; camtrace: SimCam's ``many`` preset, none of whose models an attacked
detector knows).

Each batch holds ``models_per_batch`` models x ``patches_per_model`` patches (20 x 4 = 80;
guess: SpoC does not say how a batch is composed, and a triplet needs two patches of one
model and one of another, so batches are drawn per model as in Schroff et al. 2015), drawn
by a generator seeded by (seed, iteration), so a resumed run draws what an uninterrupted one
would have, and ends with the same weights. ``out_dir`` holds ``train_state.safetensors``
(weights, Adam moments, iteration, losses), ``log.json`` and ``embedder.safetensors``
(weights in float16 + card: kind embedder, models, patch size, data digest, settings,
environment).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from safetensors import SafetensorError
from safetensors.torch import load_file

from camtrace._version import __version__
from camtrace.attacks.generative.checkpoint import (
    array_digest,
    load_state,
    save_state,
    save_weights,
)
from camtrace.attacks.generative.spoc import Embedder, triplet_loss
from camtrace.attacks.generative.training import as_patches
from camtrace.errors import CamtraceError
from camtrace.hardware import environment
from camtrace.io import write_json
from camtrace.models.checkpoint import read_card
from camtrace.schema import Section, option

EMBEDDER_KIND = "embedder"
EMBEDDER_FILE = "embedder.safetensors"
STATE_FILE = "train_state.safetensors"
LOG_FILE = "log.json"
MIN_SIDE = 20  # the fixed layer (3) and four poolings (16), a multiple of 4


class EmbedderConfig(Section):
    """Embedder pretraining. ``margin``: the triplet margin on the L1 distance of the 512-d
    embeddings, 1.0. SpoC's one margin sentence stands under Eq. 3, L_DST: "m is the margin
    of the triplet-loss fixed to 0.01 in our experiments". camtrace reads it as L_DST's
    margin only: the sentence defines the m of Eq. 3, which "compar[es] distances" as a
    triplet loss does, and the supplement's embedder section (Sec. A) gives no margin; and
    with unnormalised embeddings a triplet margin only sets their scale, which d_ref then
    carries into L_DST, so 1.0 and 0.01 train the same embedder up to scale.
    CPU-sized ``iterations``; resuming needs the same settings."""

    models_per_batch: int = option(20, "camera models per batch (20 x 4 = SpoC's 80)", minimum=2)
    patches_per_model: int = option(4, "patches per model in a batch", minimum=1)
    iterations: int = option(1000, "triplet-loss iterations", minimum=1)
    lr: float = option(1e-4, "Adam learning rate", minimum=0)
    margin: float = option(1.0, "triplet margin on the L1 distance of the embeddings", minimum=0)
    save_every: int = option(50, "iterations between saved training states", minimum=1)


def embedder_key(config: EmbedderConfig, seed: int) -> dict[str, Any]:
    """What makes an embedder: its own settings (not a section's extra keys) and the seed."""
    return {
        **config.values_of(EmbedderConfig),
        "seed": seed,
        "progress": None,
    }


def train_embedder(
    patches_uint8: np.ndarray | torch.Tensor,
    models: Sequence[str],
    config: EmbedderConfig | None = None,
    out_dir: str | Path = "embedder",
    resume: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Train SpoC's embedder on uint8 patches (N, H, W, 3) labelled by camera ``models`` (one
    name per patch, at least two models) and return its checkpoint; ``resume`` continues the
    state in ``out_dir`` or returns a finished checkpoint there, False starts afresh;
    ``seed`` seeds the weights and the batches."""
    config = config or EmbedderConfig()
    x = as_patches(patches_uint8, "embedder")
    names, labels = np.unique(np.asarray(models, dtype=str), return_inverse=True)
    if len(labels) != len(x) or len(names) < 2:
        raise CamtraceError(
            f"embedder training: give one camera model per patch ({len(x)} patches, "
            f"{len(labels)} names) and at least two models (got {len(names)})"
        )
    if x.shape[-1] < MIN_SIDE:
        raise CamtraceError(f"embedder training: patches of {x.shape[-1]} px; give {MIN_SIDE}+")
    out = Path(out_dir)
    card = {
        "kind": EMBEDDER_KIND,
        "arch": "spoc-embedder",
        "paper": "Cozzolino et al. 2021",
        "models": names.tolist(),
        "patch_size": int(x.shape[-1]),
        "data": {"patches": array_digest(x), "labels": array_digest(labels), "count": len(x)},
        "config": embedder_key(config, seed),
    }
    if resume and (out / EMBEDDER_FILE).is_file():
        _same(read_card(out / EMBEDDER_FILE), card, out)
        return out / EMBEDDER_FILE
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        embedder = Embedder()
    opt = torch.optim.Adam(embedder.parameters(), lr=config.lr)
    state: dict[str, Any] = {"card": card, "iteration": 0, "losses": []}
    if resume and (out / STATE_FILE).is_file():
        state = load_state(out / STATE_FILE, {"embedder": embedder}, {"embedder": opt})
        _same(state["card"], card, out)
    by_model = [np.flatnonzero(labels == k) for k in range(len(names))]
    embedder.train()
    with Progress(disable=not progress) as bar:
        task = bar.add_task("train SpoC embedder", total=config.iterations)
        while state["iteration"] < config.iterations:
            idx = _batch(by_model, config, seed, state["iteration"])
            loss = triplet_loss(
                embedder(x[idx].float()), torch.from_numpy(labels[idx]), config.margin
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state["iteration"] += 1
            state["losses"].append({"iteration": state["iteration"], "triplet": loss.item()})
            if state["iteration"] % config.save_every == 0:
                _save(out, embedder, opt, state)
            bar.update(task, completed=state["iteration"])
    _save(out, embedder, opt, state)
    final = {
        **card,
        "iterations": state["iteration"],
        "loss": state["losses"][-1]["triplet"] if state["losses"] else None,
        "environment": environment(torch.device("cpu"), "fp32"),
        "camtrace_version": __version__,
        "input": "float RGB pixels in [0, 255], (N, 3, H, W); gives (N, 512)",
    }
    # float16: 13.6 MB instead of 27, under the 25 MB a cache kept beside the code may be;
    # every SpoC generator reads the embedder from this file, so all see the same weights
    return save_weights(embedder, out / EMBEDDER_FILE, final, storage="float16")


def load_embedder(path: str | Path) -> Embedder:
    """A trained SpoC embedder (eval mode, frozen, its card as ``.card``); one-line errors for
    a missing file or a checkpoint of something else."""
    path = Path(path)
    if not path.is_file():
        raise CamtraceError(
            f"{path}: SpoC embedder checkpoint not found; pre-train one with "
            "camtrace.attacks.generative.train_embedder (SimCam preset 'many')"
        )
    card = read_card(path)
    if card.get("kind") != EMBEDDER_KIND:
        raise CamtraceError(
            f"{path}: a {card.get('kind') or card.get('arch', 'detector')} checkpoint, not a SpoC "
            "embedder; give the embedder.safetensors written by train_embedder"
        )
    embedder = Embedder()
    try:
        embedder.load_state_dict(load_file(str(path)), strict=True)
    except (RuntimeError, SafetensorError) as e:
        raise CamtraceError(f"{path}: weights do not fit a SpoC embedder ({e})") from None
    embedder.card = card
    return embedder.eval().requires_grad_(False)


def _batch(
    by_model: list[np.ndarray], config: EmbedderConfig, seed: int, iteration: int
) -> torch.Tensor:
    """This iteration's patch indices: P models x K patches, seeded by (seed, iteration)."""
    rng = np.random.default_rng([seed, iteration])
    chosen = rng.choice(len(by_model), min(config.models_per_batch, len(by_model)), replace=False)
    k = config.patches_per_model
    idx = [rng.choice(by_model[m], k, replace=len(by_model[m]) < k) for m in sorted(chosen)]
    return torch.from_numpy(np.concatenate(idx))


def _save(out: Path, embedder: Embedder, opt: torch.optim.Optimizer, state: dict) -> None:
    save_state(out / STATE_FILE, {"embedder": embedder}, {"embedder": opt}, state)
    write_json(out / LOG_FILE, {"losses": state["losses"]})


def _same(saved: dict[str, Any], wanted: dict[str, Any], out: Path) -> None:
    """One-line error when ``out`` holds another embedder training."""
    differ = [k for k in ("models", "patch_size", "data", "config") if saved.get(k) != wanted[k]]
    if differ:
        raise CamtraceError(
            f"{out}: holds a SpoC embedder training with another {', '.join(differ)}; "
            "use another out_dir or resume=False"
        )
