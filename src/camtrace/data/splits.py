"""Train/val/eval splits as values of the manifest's ``split`` column, and the leak check.

``bondi_split`` follows Bondi et al. 2017, Sec. III-A: evaluation photos come from one
device instance per model and from scenes never used for training or validation, so the
reported accuracy is biased neither by scene content nor by the very device seen in
training. ``random_split`` is the image-level split of Chen 2019 / Güera 2018.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from camtrace.data.manifest import Manifest, Record
from camtrace.errors import CamtraceError

SPLITS = ("train", "val", "eval")
UNUSED = "unused"
LEAK_CHECKS = ("scene", "image")


def _require_scenes(manifest: Manifest, what: str) -> None:
    """Refuse rows without a scene id: a scene-disjoint protocol cannot place them."""
    empty = [r for r in manifest if not r.scene]
    if empty:
        raise CamtraceError(
            f"{what}: {len(empty)} images have no scene id (e.g. '{empty[0].path}'); "
            "index with --scenes-csv to give scene ids, or use --split random"
        )


def _scene_counts(n: int, eval_frac: float, val_frac: float) -> tuple[int, int, int]:
    """Numbers of (train, val, eval) scenes: at least one each."""
    if not (0 < eval_frac < 1 and 0 < val_frac < 1 and eval_frac + val_frac < 1):
        raise CamtraceError(
            f"scene fractions eval={eval_frac}, val={val_frac}: each must be in (0, 1) "
            "and their sum below 1"
        )
    n_eval, n_val = max(1, round(eval_frac * n)), max(1, round(val_frac * n))
    if n - n_eval - n_val < 1:
        raise CamtraceError(
            f"only {n} scenes: a Bondi split needs at least one train, one val and one eval "
            "scene; add scene ids or lower the scene fractions"
        )
    return n - n_eval - n_val, n_val, n_eval


def _scene_splits(
    scenes: list[str], rng: np.random.Generator, eval_frac: float, val_frac: float
) -> dict[str, str]:
    """A random partition of ``scenes`` into train/val/eval."""
    n_train, n_val, _ = _scene_counts(len(scenes), eval_frac, val_frac)
    order = [scenes[i] for i in rng.permutation(len(scenes))]
    return {
        s: "train" if i < n_train else "val" if i < n_train + n_val else "eval"
        for i, s in enumerate(order)
    }


def _eval_devices(
    instances: dict[str, list[str]], rng: np.random.Generator, eval_instance: str | None
) -> set[tuple[str, str]]:
    """``(model, instance)`` of one device per multi-instance model: ``eval_instance`` if
    given, else drawn at random."""
    devices = set()
    for model, names in sorted(instances.items()):
        if len(names) < 2:
            continue
        if eval_instance is None:
            chosen = names[int(rng.integers(len(names)))]
        elif eval_instance in names:
            chosen = eval_instance
        else:
            raise CamtraceError(
                f"--eval-instance '{eval_instance}': model {model} has no such instance "
                f"(it has {', '.join(names)}); pick an instance every model has, or omit it"
            )
        devices.add((model, chosen))
    return devices


def _bondi_split_of(r: Record, scene_split: str, eval_devices: set[tuple[str, str]]) -> str:
    """Eval device on eval scenes -> eval; other devices on train/val scenes -> train/val."""
    if (r.model, r.instance) in eval_devices:
        return "eval" if scene_split == "eval" else UNUSED
    return UNUSED if scene_split == "eval" else scene_split


def bondi_split(
    manifest: Manifest,
    seed: int = 0,
    eval_scene_frac: float = 0.15,
    val_scene_frac: float = 0.15,
    eval_instance: str | None = None,
    strict: bool = False,
) -> Manifest:
    """Bondi 2017 (Sec. III-A) model/scene split; rows fitting no set become ``"unused"``.

    Scenes are partitioned at random into train/val/eval. Evaluation = one instance per
    model on eval scenes; training/validation = the other instances on train/val scenes.
    A model with a single instance cannot give an unseen eval device: by default it is kept
    in train/val only (no eval rows) with a warning; ``strict=True`` raises instead.
    """
    _require_scenes(manifest, "bondi split")
    rng = np.random.default_rng(seed)
    scenes = sorted({r.scene for r in manifest})
    scene_of = _scene_splits(scenes, rng, eval_scene_frac, val_scene_frac)
    instances: dict[str, set[str]] = defaultdict(set)
    for r in manifest:
        instances[r.model].add(r.instance)
    listed = {m: sorted(names) for m, names in instances.items()}
    single = sorted(m for m, names in listed.items() if len(names) < 2)
    if single:
        message = (
            f"bondi split: {len(single)} models have a single instance ({', '.join(single)}); "
            "they get train/val images only, no eval device"
        )
        if strict:
            raise CamtraceError(message + "; index with --multi-instance-only to drop them")
        warnings.warn(message, stacklevel=2)
    eval_devices = _eval_devices(listed, rng, eval_instance)
    out = manifest.with_records(
        replace(r, split=_bondi_split_of(r, scene_of[r.scene], eval_devices)) for r in manifest
    )
    _warn_empty_sets(out, set(single))
    return out


def _warn_empty_sets(manifest: Manifest, single: set[str]) -> None:
    """Warn when a model ends up with no train, val or (multi-instance) eval images."""
    counts = Counter((r.model, r.split) for r in manifest)
    gaps = [
        f"{m}/{s}"
        for m in manifest.models
        for s in SPLITS
        if counts[m, s] == 0 and not (s == "eval" and m in single)
    ]
    if gaps:
        warnings.warn(
            f"split leaves {len(gaps)} model/set pairs empty ({', '.join(gaps[:5])}); "
            "try another --seed or more scenes",
            stacklevel=3,
        )


def _split_counts(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """Largest-remainder rounding of ``n * fractions``; every positive fraction gets >= 1."""
    raw = [f * n for f in fractions]
    counts = [int(x) for x in raw]
    by_remainder = sorted(range(3), key=lambda i: counts[i] - raw[i])
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    for i in range(3):
        if fractions[i] > 0 and counts[i] == 0 and max(counts) > 1:
            counts[int(np.argmax(counts))] -= 1
            counts[i] += 1
    return counts


def random_split(
    manifest: Manifest, seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
) -> Manifest:
    """Image-level random train/val/eval split, stratified per model (Chen 2019, Güera 2018)."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise CamtraceError(
            f"split fractions {tuple(fractions)}: give three non-negative numbers summing to 1"
        )
    rng = np.random.default_rng(seed)
    by_model: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(manifest):
        by_model[r.model].append(i)
    split_of: dict[int, str] = {}
    for model in sorted(by_model):
        rows = by_model[model]
        order = [rows[j] for j in rng.permutation(len(rows))]
        names = [s for s, k in zip(SPLITS, _split_counts(len(rows), fractions)) for _ in range(k)]
        split_of.update(zip(order, names))
    return manifest.with_records(replace(r, split=split_of[i]) for i, r in enumerate(manifest))


def _first_leak(
    rows: list[Record], key: Callable[[Record], str]
) -> tuple[str, list[str], int] | None:
    """The first key (in row order) found in several splits, those splits, and the leak count."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        splits_of[key(r)].add(r.split)
    leaking = [k for k, s in splits_of.items() if len(s) > 1]
    if not leaking:
        return None
    return leaking[0], [s for s in SPLITS if s in splits_of[leaking[0]]], len(leaking)


def _leak_error(kind: str, found: tuple[str, list[str], int], fix: str) -> CamtraceError:
    key, splits, n = found
    return CamtraceError(
        f"leak: {kind} '{key}' is in {' and '.join(splits)} ({n} {kind}s leak in total); {fix}"
    )


def check_leaks(
    manifest: Manifest, by: tuple[str, ...] = ("scene", "image"), devices: bool = False
) -> None:
    """Raise :class:`CamtraceError` if a scene or image is shared between train/val/eval.

    ``"unused"`` rows are ignored. With ``devices=True`` an eval device (``Record.device``)
    must also be absent from train and val (Bondi 2017's unseen-instance protocol).
    """
    unknown = sorted(set(by) - set(LEAK_CHECKS))
    if unknown:
        raise CamtraceError(f"leak check by {unknown}: unknown; use {', '.join(LEAK_CHECKS)}")
    rows = [r for r in manifest if r.split in SPLITS]
    if not rows:
        raise CamtraceError(
            "leak check: no image is in train/val/eval; split the manifest first (camtrace split)"
        )
    if "scene" in by:
        _require_scenes(manifest.with_records(rows), "leak check by scene")
        found = _first_leak(rows, lambda r: r.scene)
        if found:
            raise _leak_error("scene", found, "use a scene-disjoint split (--split bondi)")
    if "image" in by:
        found = _first_leak(rows, lambda r: os.path.normpath(manifest.abspath(r)))
        if found:
            raise _leak_error("image", found, "remove duplicate rows from the manifest")
    if devices:
        eval_devices = {r.device for r in rows if r.split == "eval"}
        seen = [r.device for r in rows if r.split != "eval" and r.device in eval_devices]
        if seen:
            raise CamtraceError(
                f"leak: device '{seen[0]}' is in eval and in train/val "
                f"({len(set(seen))} devices leak in total); use --split bondi"
            )


def split_summary(manifest: Manifest) -> dict:
    """Counts per split (images, scenes, devices) and per model and split, for reports."""
    order = {s: i for i, s in enumerate((*SPLITS, UNUSED))}
    names = sorted({r.split for r in manifest}, key=lambda s: (order.get(s, len(order)), s))
    per_model = Counter((r.model, r.split) for r in manifest)
    return {
        "images": {s: sum(r.split == s for r in manifest) for s in names},
        "scenes": {s: len({r.scene for r in manifest if r.split == s and r.scene}) for s in names},
        "devices": {s: len({r.device for r in manifest if r.split == s}) for s in names},
        "models": {m: {s: per_model[m, s] for s in names} for m in manifest.models},
    }


def split_manifest(manifest: Manifest, spec: dict[str, Any] | None, seed: int) -> Manifest:
    """The split section (Bondi's scene/device-disjoint protocol by default), leak-checked."""
    spec = dict(spec or {})
    protocol = spec.pop("protocol", "bondi")
    if protocol == "bondi":
        out = bondi_split(manifest, seed=seed, **spec)
        check_leaks(out, by=("scene", "image"), devices=True)
    elif protocol == "random":
        out = random_split(manifest, seed=seed, **spec)
        check_leaks(out, by=("image",))
    elif protocol == "given":
        out = manifest
        check_leaks(out, by=("image",))
    else:
        raise CamtraceError(f"split.protocol '{protocol}' is not one of bondi, random, given")
    return out
