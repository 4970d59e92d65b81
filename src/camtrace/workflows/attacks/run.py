"""The attack runner: an :class:`~camtrace.workflows.attacks.plan.AttackPlan` on trained
detectors (Güera 2018 Tables 3-4, Zhao 2019 Table 2, SpoC Table 4).

Each detector's patches are picked once (:func:`build_pool`); every run attacks them at each
of its settings (epsilon, target) and judges the uint8 outputs as is and after each JPEG of
the plan; a transfer crafts on each detector and judges on every one. Success is counted on
the uint8 outputs; the attack's float-domain success is reported beside, never instead
(docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from camtrace.attacks import Jpeg, recompress
from camtrace.data.manifest import Manifest
from camtrace.data.patch_store import PatchStore
from camtrace.errors import CamtraceError
from camtrace.evaluation.attack_metrics import (
    as_nhwc,
    attack_metrics,
    correct_subset,
    distortion,
    outcome_from_scores,
    outcome_metrics,
    softmax_scores,
    summarise_distortion,
)
from camtrace.models.base import Detector
from camtrace.models.checkpoint import load_detector
from camtrace.models.inference import eval_mode
from camtrace.workflows.attacks.plan import AttackPlan, Epsilon, JpegChoice, RunSpec
from camtrace.workflows.report import percent

# -- what is attacked ---------------------------------------------------------------------------


@dataclass
class Pool:
    """The patches of one detector that are attacked: a seeded pick of its split."""

    images: np.ndarray  # (n, s, s, 3) uint8
    labels: np.ndarray  # true classes, in the detector's class order
    available: int  # patches in the split
    examined: int  # patches classified to find them


class PoolChoice(Protocol):
    """Which patches a section attacks (the ``attacks`` plan, the ``robustness`` section)."""

    split: str
    patches: int
    select: str


def build_pool(detector: Detector, store: PatchStore, plan: PoolChoice, seed: int) -> Pool:
    """Pick ``plan.patches`` patches of ``plan.split``: correctly classified ones (Güera) or
    any (Zhao), in a random order fixed by ``seed``."""
    idx = store.indices(plan.split, models=[m for m in detector.classes if m in store.classes])
    images, labels = store.patches(idx), store.labels(idx, detector.classes)
    if plan.select == "correct":
        picked, examined = correct_subset(detector, images, labels, plan.patches, seed)
    else:
        picked = np.random.default_rng(seed).permutation(len(idx))[: plan.patches]
        examined = len(picked)
    return Pool(images[picked], labels[picked], len(idx), examined)


class CameraJpeg:
    """Each camera model's own JPEG settings, read from its first image in the manifest
    (the plan's ``camera`` JPEG)."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.cache: dict[str, Jpeg] = {}

    def __call__(self, model: str) -> Jpeg:
        if model not in self.cache:
            record = next((r for r in self.manifest if r.model == model), None)
            if record is None:
                raise CamtraceError(f"attacks: jpeg 'camera': no image of {model} in the manifest")
            path = self.manifest.abspath(record)
            self.cache[model] = Jpeg.from_file(path)
        return self.cache[model]


def judged(
    images: np.ndarray,
    jpeg: JpegChoice,
    models: np.ndarray,
    camera: CameraJpeg,
    classes: list[str],
) -> np.ndarray:
    """``images`` as the detector is asked to judge them: as is, or JPEG re-compressed with
    the settings of ``jpeg`` for the camera model ``models[i]`` of each image."""
    if jpeg.plain:
        return images
    out = np.empty_like(images)
    for c in np.unique(models):
        rows = models == c
        out[rows] = recompress(images[rows], jpeg.settings(classes[c], camera))
    return out


# -- running ------------------------------------------------------------------------------------


@dataclass
class Example:
    """Patches for the examples figure (Güera Fig. 4) of one run on one detector."""

    clean: np.ndarray
    adv: np.ndarray
    gradient_sign: np.ndarray
    pred_clean: list[str]
    pred_adv: list[str]
    setting: str


@dataclass
class AttackResults:
    """What :func:`run_attacks` measured (``metrics``) and what its report draws."""

    metrics: dict[str, Any]
    examples: dict[tuple[str, int], Example] = field(default_factory=dict)


@dataclass
class _Context:
    plan: AttackPlan
    camera: CameraJpeg
    seed: int
    log: Callable[[str], None]
    advance: Callable[[], None]


def gradient_sign_image(detector: nn.Module, images: np.ndarray) -> np.ndarray:
    """sign(grad_x J(x, y')) at the detector's own label y' as Güera Fig. 4 prints it:
    -1 -> 0, 0 and +1 -> 255 (uint8, N, H, W, 3)."""
    param = next(detector.parameters())
    x = torch.from_numpy(np.ascontiguousarray(as_nhwc(images))).permute(0, 3, 1, 2)
    x = x.to(param.device, param.dtype).requires_grad_(True)
    with eval_mode(detector):
        logits = detector(x)
        loss = F.cross_entropy(logits, logits.argmax(1).detach(), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return np.where(grad.permute(0, 2, 3, 1).cpu().numpy() >= 0, 255, 0).astype(np.uint8)


def _target_indices(targets: str | tuple[str, ...] | None, classes: list[str]) -> list[int | None]:
    if targets is None:
        return [None]
    if targets == "all":
        return list(range(len(classes)))
    unknown = sorted(set(targets) - set(classes))
    if unknown:
        raise CamtraceError(
            f"attacks: targets {unknown} are not classes of the detector: {', '.join(classes)}"
        )
    return [classes.index(t) for t in targets]


def _eps_fields(eps: Epsilon | None) -> dict[str, float | None]:
    return {"eps": None if eps is None else eps.value, "eps_pixels": eps and eps.pixels}


def _attack_setting(
    spec: RunSpec,
    eps: Epsilon | None,
    target: int | None,
    det: Detector,
    pool: Pool,
    ctx: _Context,
) -> tuple[dict[str, Any], tuple[np.ndarray, ...] | None]:
    """Attack one setting (eps, target) of a run; its metrics row and (clean, adv) patches."""
    keep = np.ones(len(pool.labels), bool) if target is None else pool.labels != target
    x, y = pool.images[keep][: spec.patches], pool.labels[keep][: spec.patches]
    row: dict[str, Any] = {
        **_eps_fields(eps),
        "target": None if target is None else det.classes[target],
        "n": len(x),
    }
    if len(x) == 0:
        ctx.log(f"  {spec.method}: no patch to attack for target {row['target']} (skipped)")
        return row, None
    torch.manual_seed(ctx.seed)
    attack = spec.build(eps, row["target"], ctx.camera, ctx.plan.batch_size)
    adv, info = attack(det, x, target=target, labels=y)
    row.update(attack_metrics(det, x, y, adv, target=target, scores=info.scores))
    row["attack"] = info.summary()
    t = None if target is None else np.full(len(y), target)
    models = y if target is None else t
    row["jpeg"] = {
        jpeg.name: outcome_metrics(
            softmax_scores(det, judged(adv, jpeg, models, ctx.camera, det.classes)),
            y,
            det.classes,
            t,
        )
        for jpeg in ctx.plan.jpeg
        if not jpeg.plain
    }
    return row, (x, adv)


def _psnr(value: float | None) -> str:
    return "unchanged" if value is None else f"PSNR {value:.1f} dB"


def _describe(row: dict[str, Any], targeted: bool) -> str:
    o = row["overall"]
    where = [] if row["eps"] is None else [f"eps {row['eps']:g} ({row['eps_pixels']:g} px)"]
    where += [] if row["target"] is None else [f"-> {row['target']}"]
    rate = f"SAR {percent(o['sar'])}, " if targeted else ""
    return (
        f"{' '.join(where)}: {rate}error rate {percent(o['error_rate'])}, confidence "
        f"{percent(o['confidence'])} (float beside: "
        f"{percent(row['attack']['float_success_rate'])}), "
        f"{_psnr(o['psnr'])}, n={o['n']}"
    )


def _run_on_detector(
    spec: RunSpec,
    index: int,
    arch: str,
    det: Detector,
    pool: Pool,
    ctx: _Context,
    examples: dict[tuple[str, int], Example],
) -> dict[str, Any]:
    targets = _target_indices(spec.targets, det.classes)
    settings = [(e, t) for e in (spec.eps or (None,)) for t in targets]
    shown = settings[len(settings) // 2]
    rows = []
    for eps, target in settings:
        row, patches = _attack_setting(spec, eps, target, det, pool, ctx)
        ctx.advance()
        rows.append(row)
        if patches is None:
            continue
        ctx.log(f"  {arch} {spec.method} {_describe(row, target is not None)}")
        if (eps, target) == shown and ctx.plan.examples > 0:
            examples[(arch, index)] = _example(det, *patches, row, ctx.plan.examples)
    return {
        "method": spec.method,
        "params": spec.params,
        "targeted": spec.targeted,
        "settings": rows,
    }


def _example(
    det: Detector, x: np.ndarray, adv: np.ndarray, row: dict[str, Any], count: int
) -> Example:
    x, adv = x[:count], adv[:count]
    names = [det.classes[i] for i in softmax_scores(det, x).argmax(1)]
    names_adv = [det.classes[i] for i in softmax_scores(det, adv).argmax(1)]
    setting = ", ".join(
        filter(
            None,
            [
                None if row["eps"] is None else f"eps {row['eps']:g} ({row['eps_pixels']:g} px)",
                None if row["target"] is None else f"target {row['target']}",
            ],
        )
    )
    return Example(
        x, adv, gradient_sign_image(det, x), names, names_adv, setting or "default parameters"
    )


def _clean_outcome(det: Detector, pool: Pool, ctx: _Context) -> dict[str, Any]:
    """The detector on the picked patches before any attack, as is and after each JPEG."""
    out: dict[str, Any] = {
        "available": pool.available,
        "examined": pool.examined,
        "picked": len(pool.labels),
        "select": ctx.plan.select,
    }
    if len(pool.labels) == 0:
        return out
    for jpeg in ctx.plan.jpeg:
        images = judged(pool.images, jpeg, pool.labels, ctx.camera, det.classes)
        out[jpeg.name] = outcome_from_scores(softmax_scores(det, images), pool.labels)
    return out


def assign_targets(labels: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """Target of each sample for a transfer: the i-th of ``targets`` in turn, skipping the
    sample's own class; -1 where no other target exists."""
    out = np.full(len(labels), -1, dtype=np.int64)
    for i, y in enumerate(labels):
        options = [t for t in targets if t != y]
        if options:
            out[i] = options[i % len(options)]
    return out


def _transfer(
    spec: RunSpec, dets: dict[str, Detector], pools: dict[str, Pool], ctx: _Context
) -> dict[str, Any]:
    """Craft on each detector, judge on every one (SpoC Table 4), plain and after JPEG."""
    archs = [a for a in dets if spec.attacks(a)]
    classes = dets[archs[0]].classes
    for a in archs:
        if dets[a].classes != classes:
            raise CamtraceError(
                f"attacks: transfer needs one class list; {a} has {dets[a].classes}"
            )
    metric = "sar" if spec.targeted else "error_rate"
    eps = spec.eps[0] if spec.eps else None
    out: dict[str, Any] = {
        "method": spec.method,
        **_eps_fields(eps),
        "params": spec.params,
        "metric": metric,
        "detectors": archs,
        "sources": {},
    }
    for a in archs:
        x, y = pools[a].images[: spec.patches], pools[a].labels[: spec.patches]
        t = assign_targets(y, _target_indices(spec.targets, classes)) if spec.targeted else None
        if t is not None:
            x, y, t = x[t >= 0], y[t >= 0], t[t >= 0]
        if len(x) == 0:
            ctx.log(f"  transfer from {a}: no patch to attack (skipped)")
            ctx.advance()
            continue
        torch.manual_seed(ctx.seed)
        attack = spec.build(eps, None, ctx.camera, ctx.plan.batch_size)
        adv, info = attack(dets[a], x, target=t, labels=y)
        models = y if t is None else t
        attacked, clean = {}, {}
        for jpeg in ctx.plan.jpeg:
            adv_j = judged(adv, jpeg, models, ctx.camera, classes)
            x_j = judged(x, jpeg, models, ctx.camera, classes)
            attacked[jpeg.name] = {
                b: outcome_from_scores(softmax_scores(dets[b], adv_j), y, t)[metric] for b in archs
            }
            clean[jpeg.name] = {
                b: outcome_from_scores(softmax_scores(dets[b], x_j), y, t)[metric] for b in archs
            }
        dist = summarise_distortion(distortion(x, adv))
        out["sources"][a] = {
            "n": len(x),
            "attack": info.summary(),
            "distortion": dist,
            "attacked": attacked,
            "clean": clean,
        }
        cells = ", ".join(f"{b} {percent(v)}" for b, v in attacked[ctx.plan.jpeg[0].name].items())
        ctx.log(f"  transfer {spec.method} crafted on {a}: {metric} {cells}, {_psnr(dist['psnr'])}")
        ctx.advance()
    return out


def run_attacks(
    plan: AttackPlan,
    detectors: dict[str, dict[str, Any]],
    manifest: Manifest,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> AttackResults:
    """Run ``plan`` on trained detectors (``run_experiment``'s ``detectors`` entries: their
    ``checkpoint`` and ``patch_store``); ``manifest`` gives the cameras' own JPEG tables."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dets = {a: load_detector(d["checkpoint"], device=device) for a, d in detectors.items()}
    stores = {a: PatchStore.open(d["patch_store"]) for a, d in detectors.items()}
    steps = sum(
        len(r.eps or (None,)) * len(_target_indices(r.targets, dets[a].classes))
        for r in plan.runs
        for a in dets
        if r.attacks(a)
    )
    steps += sum(len(t.detectors or dets) for t in plan.transfers)
    results = AttackResults({"plan": _plan_dict(plan), "detectors": {}})
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("attacks", total=steps)
        ctx = _Context(plan, CameraJpeg(manifest), seed, log, lambda: bar.advance(task))
        pools = {a: build_pool(det, stores[a], plan, seed) for a, det in dets.items()}
        for a, det in dets.items():
            clean = _clean_outcome(det, pools[a], ctx)
            log(
                f"attacks on {a}: {clean['picked']} patches picked ({plan.select}) of "
                f"{clean['available']} "
                f"in '{plan.split}', {clean['examined']} examined"
            )
            runs = [
                _run_on_detector(r, i, a, det, pools[a], ctx, results.examples)
                if r.attacks(a)
                else None
                for i, r in enumerate(plan.runs)
            ]
            results.metrics["detectors"][a] = {"clean": clean, "runs": runs}
        transfers = [_transfer(t, dets, pools, ctx) for t in plan.transfers]
        if transfers:
            results.metrics["transfer"] = transfers if plan.transfer_listed else transfers[0]
    return results


def _plan_dict(plan: AttackPlan) -> dict[str, Any]:
    return {
        "split": plan.split,
        "patches": plan.patches,
        "select": plan.select,
        "jpeg": [j.name for j in plan.jpeg],
        "eps_units": plan.eps_notes(),
    }
