"""SpoC's sets: S, the images to spoof (synthetic: SpoC's setting; real patches of the other
cameras: camtrace's extension), and R_M, the target camera's patches (Cozzolino et al. 2021,
Sec. 3-4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from camtrace.data.images import load_rgb
from camtrace.data.manifest import Manifest
from camtrace.data.patch_store import PatchStore
from camtrace.data.synthetic import source_model
from camtrace.errors import CamtraceError
from camtrace.models.gan_sources import HELD_OUT
from camtrace.workflows.generators.run import centre_crop
from camtrace.workflows.spoc.plan import SpocPlan

# -- S ---------------------------------------------------------------------------------


@dataclass
class Inputs:
    """One set S: images to train a generator on, to validate (and tune eps) on, to test."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _take(images: np.ndarray, n: int, seed: int) -> np.ndarray:
    return images[np.random.default_rng(seed).permutation(len(images))[:n]]


def _load(manifest: Manifest, split: str, model: str | None, size: int) -> np.ndarray:
    """Central ``size`` crops of the synthetic images of ``split`` (``model``: one source;
    None: every source but the held-out one; SpoC Sec. 5.2: central crops)."""
    held_out = source_model(HELD_OUT)
    rows = [
        r for r in manifest.split(split) if (r.model == model if model else r.model != held_out)
    ]
    if not rows:
        raise CamtraceError(f"{manifest.root}: no synthetic images of split {split} ({model})")
    return centre_crop(np.stack([load_rgb(manifest.abspath(r)) for r in rows]), size)


def synthetic_inputs(manifest: Manifest, plan: SpocPlan) -> tuple[Inputs, np.ndarray]:
    """S from the training sources (train / val / eval splits) and the held-out source's
    eval images (Tables 2 and 6)."""
    s, p, seed = plan.section, plan.patch_size, plan.seed
    inputs = Inputs(
        _take(_load(manifest, "train", None, p), s.train_patches, seed),
        _take(_load(manifest, "val", None, p), s.val_patches, seed),
        _take(_load(manifest, "eval", None, p), s.eval_patches, seed),
    )
    held_out = _take(_load(manifest, "eval", source_model(HELD_OUT), p), s.eval_patches, seed)
    return inputs, held_out


def _patches(store: PatchStore, split: str, models: Sequence[str], n: int, seed: int) -> np.ndarray:
    return store.patches(_take(store.indices(split, models=list(models)), n, seed))


def real_inputs(store: PatchStore, target: str, plan: SpocPlan) -> Inputs:
    """S of camtrace's extension: patches of the camera models other than ``target``."""
    s, others = plan.section, [m for m in store.classes if m != target]
    return Inputs(
        *(
            _patches(store, split, others, n, plan.seed)
            for split, n in (
                ("train", s.train_patches),
                ("val", s.val_patches),
                ("eval", s.eval_patches),
            )
        )
    )


def target_patches(store: PatchStore, target: str, plan: SpocPlan) -> np.ndarray:
    """R_M: train-split patches of the target camera; a one-line error when it has none."""
    out = _patches(store, "train", [target], plan.section.train_patches, plan.seed)
    if len(out) == 0:
        raise CamtraceError(
            f"spoc.targets: the camera model {target} has no train-split patches in "
            f"{store.path}; pick a target with images"
        )
    return out
