"""The ``spoof_detection:`` section run: the patches crafted, the candidates trained on the
train and val patches, every candidate measured on the eval patches (the detection rate per
attack, seen and held out, on all attacked patches and on those whose attack succeeded; the
false-positive rate on clean patches and on clean patches re-saved as JPEG), and the run's
spoof detector's verdict on whole photos, as ``camtrace detect-spoof`` gives it.

Negatives are labelled clean, positives attacked; a setting counts as detected on a patch
when the candidate's class decision is "attacked". The three splits are the run's (Bondi's:
scenes and, for eval, the device disjoint), so the eval patches are of unseen scenes and
devices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from camtrace.data.codec import save_image
from camtrace.data.images import load_rgb
from camtrace.data.manifest import Manifest
from camtrace.data.patch_store import PatchStore
from camtrace.errors import CamtraceError
from camtrace.evaluation.attack_metrics import distortion, summarise_distortion
from camtrace.models.base import Detector
from camtrace.models.checkpoint import load_detector
from camtrace.models.registry import model_spec
from camtrace.training.detector import store_card
from camtrace.training.engine import PatchSet
from camtrace.workflows.config import SpoofDetectionConfig
from camtrace.workflows.generators.run import GeneratorResults, generator_paths
from camtrace.workflows.spoof_check import attacked_patches, learned_verdict
from camtrace.workflows.spoof_detection.craft import (
    Crafted,
    Setting,
    craft,
    craft_in_turn,
    draw,
    generator_settings,
    plan_settings,
    read,
    resaved,
)
from camtrace.workflows.spoof_detection.train import Candidate, fit_linear, train_spoofnet
from camtrace.workflows.spoof_photos.section import run_spoof

FOLDER = "spoof_detection"
PHOTO_JPEG = 90  # quality the clean photos are re-saved at


@dataclass(frozen=True)
class SpoofDetectionPlan:
    """The section checked against the run's detectors: who is attacked, with what."""

    section: SpoofDetectionConfig
    against: tuple[str, ...]
    train: list[Setting]
    held_out: list[Setting]


def plan_spoof_detection(
    section: SpoofDetectionConfig, sizes: dict[str, int], handcrafted: Sequence[str]
) -> SpoofDetectionPlan:
    """Check ``section`` against the run's detectors (``sizes``: name -> patch size;
    ``handcrafted``: those without a gradient) and build every attack setting once."""
    against = section.against or tuple(sizes)
    unknown = sorted(set(against) - set(sizes))
    if unknown:
        raise CamtraceError(
            f"spoof_detection.against: {unknown} are not detectors of this run: {list(sizes)}"
        )
    if len({sizes[a] for a in against}) > 1:
        raise CamtraceError(
            "spoof_detection.against: the detectors see different patch sizes "
            f"({ {a: sizes[a] for a in against} }); attack detectors of one patch size"
        )
    chosen = {a: sizes[a] for a in against}
    train = plan_settings(section.train_attacks, against, chosen, False, handcrafted)
    held_out = plan_settings(section.held_out, against, chosen, True, handcrafted)
    if not train:
        raise CamtraceError(
            "spoof_detection.train_attacks: none of them can attack "
            f"{', '.join(against)}; add a detector with a gradient to against"
        )
    return SpoofDetectionPlan(section, against, train, held_out)


def handcrafted_of(names_and_archs: dict[str, str]) -> list[str]:
    """The run's detectors whose features are hand-crafted (no gradient to attack)."""
    return [n for n, arch in names_and_archs.items() if model_spec(arch).handcrafted]


def run_spoof_detection(
    plan: SpoofDetectionPlan,
    detectors: dict[str, dict[str, Any]],
    generators: GeneratorResults | None,
    manifest: Manifest,
    run_dir: Path,
    seed: int,
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Craft, train, measure (the module docstring); returns the section's metrics."""
    section = plan.section
    out_dir = run_dir / FOLDER
    dets = {a: load_detector(detectors[a]["checkpoint"]) for a in plan.against}
    store = PatchStore.open(detectors[plan.against[0]]["patch_store"])
    with Progress(disable=not progress, transient=True) as bar:
        sets = {
            split: training_set(plan, store, dets, split, n, seed + k, bar)
            for k, (split, n) in enumerate(
                (("train", section.train_patches), ("val", section.val_patches))
            )
        }
    log(
        f"spoof detection: {len(sets['train'])} training patches "
        f"({len(plan.train)} attack settings), {len(sets['val'])} validation patches"
    )
    n_eval = max(section.eval_patches, section.attack_patches)
    eval_idx = draw(store, "eval", n_eval, seed + 2)
    clean = read(store, eval_idx)
    labels = {a: store.labels(eval_idx, d.classes) for a, d in dets.items()}
    negatives = {"clean": clean[: section.eval_patches]}
    for q in section.jpeg_eval:
        negatives[f"JPEG q{q}"] = resaved(negatives["clean"], np.full(section.eval_patches, q))
    settings = [*plan.train, *plan.held_out]
    if section.generative and generators is not None:
        judge = (generators.metrics.get("detectors") or [plan.against[0]])[0]
        settings += generator_settings(generator_paths(generators), judge)
    crafted = []
    for setting in settings:
        n = min(section.attack_patches, setting.patches or section.attack_patches)
        judge = dets.get(setting.against) or load_detector(detectors[setting.against]["checkpoint"])
        rows = labels.get(setting.against)
        if rows is None:
            rows = store.labels(eval_idx, judge.classes)
        crafted.append(craft(setting, judge, clean[:n], rows[:n]))
        log(f"spoof detection: {setting.name} against {setting.against}, {n} eval patches")
    card = {
        **store_card(store),
        "spoof_detection": {
            "trained_on": sorted({s.name for s in plan.train}),
            "against": list(plan.against),
            "negatives": f"clean, and re-saved as JPEG at quality {list(section.jpeg_train)}",
        },
    }
    train_config = section.train.replace(seed=seed)
    candidates = [
        train_spoofnet(r, sets["train"], sets["val"], train_config, out_dir, card, progress)
        for r in section.residuals
    ]
    if section.linear:
        candidates.append(fit_linear(sets["train"], sets["val"], out_dir, card, seed))
    for c in candidates:
        log(f"spoof detection: {c.name} trained ({c.training['seconds']:.0f} s)")
    metrics = {
        "detector": candidates[0].name,
        "checkpoint": str(candidates[0].checkpoint),
        "against": list(plan.against),
        "candidates": {c.name: candidate_metrics(c) for c in candidates},
        "train": {
            "patches": len(sets["train"]),
            "val_patches": len(sets["val"]),
            "attacked": int(sets["train"].labels.sum()),
            "attacks": sorted({s.name for s in plan.train}),
            "jpeg": list(section.jpeg_train),
        },
        "negatives": {
            kind: {"n": len(x), "flagged": rates(candidates, x)} for kind, x in negatives.items()
        },
        "attacks": attack_rows(crafted, candidates),
    }
    if section.photos is not None:
        metrics["photos"] = judge_photos(
            section, candidates[0].detector, detectors, manifest, out_dir, progress, log
        )
    return metrics


def training_set(
    plan: SpoofDetectionPlan,
    store: PatchStore,
    dets: dict[str, Detector],
    split: str,
    n: int,
    seed: int,
    bar: Progress,
) -> PatchSet:
    """``n`` clean patches of ``split``, the first half of them re-saved as JPEG (a quality
    drawn per patch), and all of them attacked, the training settings in turn."""
    section = plan.section
    idx = draw(store, split, n, seed)
    clean = read(store, idx)
    labels = {a: store.labels(idx, d.classes) for a, d in dets.items()}
    lo, hi = section.jpeg_train
    qualities = np.random.default_rng(seed).integers(lo, hi + 1, n // 2)
    jpeg = resaved(clean[: n // 2], qualities)
    attacked = craft_in_turn(plan.train, dets, clean, labels, bar)
    x = np.concatenate([clean, jpeg, attacked])
    y = np.r_[np.zeros(len(clean) + len(jpeg)), np.ones(len(attacked))].astype(np.int64)
    return PatchSet(torch.from_numpy(x), torch.from_numpy(y))


def rates(candidates: Sequence[Candidate], patches: np.ndarray) -> dict[str, float | None]:
    """Each candidate's share of ``patches`` it calls attacked (None for no patches)."""
    if len(patches) == 0:
        return {c.name: None for c in candidates}
    return {c.name: float(attacked_patches(c.detector, patches).mean()) for c in candidates}


def attack_rows(crafted: Sequence[Crafted], candidates: Sequence[Candidate]) -> dict[str, Any]:
    """One row per attack setting name, pooled over the detectors it was crafted against:
    patches, the attack's success rate and PSNR, and each candidate's detection rate on all
    of them and on those whose attack succeeded."""
    rows: dict[str, Any] = {}
    for name in dict.fromkeys(c.setting.name for c in crafted):
        parts = [c for c in crafted if c.setting.name == name]
        clean = np.concatenate([c.clean for c in parts])
        attacked = np.concatenate([c.attacked for c in parts])
        success = np.concatenate([c.success for c in parts])
        first = parts[0].setting
        rows[name] = {
            "method": first.method,
            "eps": first.eps,
            "held_out": first.held_out,
            "against": [c.setting.against for c in parts],
            "n": len(attacked),
            "success": float(success.mean()),
            "successful": int(success.sum()),
            "distortion": summarise_distortion(distortion(clean, attacked)),
            "detected": rates(candidates, attacked),
            "detected_successful": rates(candidates, attacked[success]),
        }
    return rows


def candidate_metrics(c: Candidate) -> dict[str, Any]:
    return {
        "arch": c.detector.arch,
        "hparams": c.detector.hparams,
        "checkpoint": str(c.checkpoint),
        "training": c.training,
    }


def judge_photos(
    section: SpoofDetectionConfig,
    spoof_detector: Detector,
    detectors: dict[str, dict[str, Any]],
    manifest: Manifest,
    out_dir: Path,
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Whole eval photos spoofed as a run's ``spoof:`` section does (PNG, read back), and the
    learned verdict of ``camtrace detect-spoof`` on each: spoofed, clean, and clean re-saved
    as JPEG at :data:`PHOTO_JPEG`."""
    spoofed = run_spoof(section.photos, detectors, manifest, out_dir, progress, log)
    rows = []
    for p in spoofed["photos"]:
        source = Path(p["source"])
        resaved_path = out_dir / "resaved" / f"{source.stem}-q{PHOTO_JPEG}.jpg"
        save_image(resaved_path, load_rgb(source), PHOTO_JPEG)
        verdicts = {
            kind: learned_verdict(spoof_detector, path).to_dict()
            for kind, path in (
                ("spoofed", p["saved"]),
                ("clean", source),
                (f"JPEG q{PHOTO_JPEG}", resaved_path),
            )
        }
        rows.append({"photo": source.name, "reached": p["success"], **verdicts})
    kinds = ("spoofed", "clean", f"JPEG q{PHOTO_JPEG}")
    return {
        "attack": {k: spoofed[k] for k in ("detector", "method", "eps", "params")},
        "photos": rows,
        "flagged": {k: sum(r[k]["attacked"] for r in rows) for k in kinds},
        "n": len(rows),
    }
