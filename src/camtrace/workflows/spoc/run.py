"""The ``spoc`` section of an experiment: SpoC's Tables 1-6 (Cozzolino et al. 2021) on SimCam.

The plan (``spoc_plan.py``) has checked the section against the detectors and the camera
models; the sets S (``spoc_inputs.py``, the images to spoof) are of two kinds, each measured
on its own: ``synthetic`` (SpoC's setting: the images of the synthetic-image sources, the
held-out source apart) and ``real`` (camtrace's extension: patches of the other SimCam
cameras). :func:`train_spoc_all`
trains one SpoC generator per target and kind (and the Table 5 ablations) from target-camera
patches and S alone: it is given no detector. :func:`evaluate_spoc` then crafts the baselines
(PGD and TI-MI-FGSM with the eps whose PSNR on S's validation images is closest to the target
PSNR; GAP at its budget and Adv-Cam-Id stopped at the target PSNR, both trained here) on each
``crafted_on`` detector and on the ensemble of the detectors other than the one judging (SpoC's
third block), spoofs S's test images with every method and judges them by every classifier:
the SAR (share read as the target), as written and after JPEG with the target camera's own
tables, averaged over the targets, under a control row of S unattacked (the target camera's
JPEG alone can read as the target: its tables are a trace of it). Tables 1-2 are the
GAN-image detectors' true-positive rates on the training sources' and the held-out source's
images before and after SpoC, Table 6 SpoC's SAR on the held-out source's images.

Reductions against the paper are in ``configs/spoc.yaml``'s header; guesses: the gradient
baselines' eps is tuned once per method and block, on the first kind's validation images
toward the first target (the PSNR of a sign-gradient attack hardly depends on the target),
and Table 6 measures SpoC alone (its baselines' rows need their own generators per source).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from camtrace.attacks import Attack, make_attack, recompress
from camtrace.attacks.generative import (
    GeneratorConfig,
    load_embedder,
    train_embedder,
    train_generator,
    train_spoc,
)
from camtrace.attacks.generative.spoc_embedder import embedder_key
from camtrace.data.bench import recorded_digests
from camtrace.data.manifest import Manifest
from camtrace.data.patch_store import PatchStore
from camtrace.data.patches import get_protocol
from camtrace.data.synthetic import SYNTHETIC
from camtrace.errors import CamtraceError
from camtrace.evaluation.attack_metrics import softmax_scores
from camtrace.models.base import Detector
from camtrace.models.checkpoint import load_detector
from camtrace.models.ensemble import LogitEnsemble
from camtrace.models.zoo import generator_zoo
from camtrace.training.engine import TrainConfig
from camtrace.workflows.attacks.run import CameraJpeg
from camtrace.workflows.config import ExperimentConfig, SplitConfig, SvmConfig
from camtrace.workflows.generators.run import Example, read_log, train_or_retrain
from camtrace.workflows.identification import (
    Clock,
    DetectorSpec,
    SplitRun,
    head_accuracy,
    identify_on_split,
    preset_patches,
)
from camtrace.workflows.spoc.inputs import Inputs, real_inputs, synthetic_inputs, target_patches
from camtrace.workflows.spoc.plan import (
    BASELINES,
    ENSEMBLE,
    ENSEMBLE_GENERATIVE,
    SPOC_2021,
    SpocPlan,
    closest_eps,
    mean_psnr,
)

# -- the embedder and SpoC's generators (no detector) -----------------------------------------


def pretrain_embedder(
    store: PatchStore | None, plan: SpocPlan, workdir: Path, progress: bool = True
) -> Path:
    """SpoC's embedder on every patch of ``store`` (the embedder preset's camera models),
    cached under ``workdir`` by the store and the settings; the section's ``path`` instead
    when given (a missing file is a one-line error)."""
    e = plan.section.embedder
    if e.path is not None:
        load_embedder(e.path)
        return Path(e.path)
    if store is None:
        raise CamtraceError("spoc.embedder: give a path or the patches of a preset to train on")
    key = json.dumps({"store": store.path.name, **embedder_key(e, plan.seed)})
    out = workdir / f"spoc-embedder-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    idx = store.indices()
    models = np.asarray(store.classes)[store.labels(idx, store.classes)]
    return train_embedder(store.patches(idx), models, e, out, seed=plan.seed, progress=progress)


def zoo_spoc(plan: SpocPlan, manifest: Manifest) -> dict[str, Path]:
    """The verified files of the zoo's ``spoc-<target>`` generators the section may use (its
    ``pretrained`` key): trained on this data (SimCam-Bench's) at these patches."""
    if not plan.section.pretrained or manifest.digest() != recorded_digests()["manifest"]:
        return {}
    zoo = generator_zoo()
    entries = {t: zoo.get(f"spoc-{t}") for t in plan.targets}
    return {
        t: e.verified_path()
        for t, e in entries.items()
        if e is not None and e.patch_size == plan.patch_size
    }


def train_spoc_all(
    plan: SpocPlan,
    inputs: Mapping[str, Callable[[str], Inputs]],
    real: Mapping[str, np.ndarray],
    embedder: Path,
    run_dir: Path,
    log: Callable[[str], None] = print,
    shipped: Mapping[str, Path] | None = None,
) -> dict[str, dict[str, dict[str, Path]]]:
    """SpoC's generators (and Table 5's ablations) by kind, variant and target, from the
    target-camera patches ``real`` and the sets S ``inputs[kind](target)`` alone: no detector
    is passed, loaded or read here. ``shipped``: the zoo's SpoC on synthetic S by target,
    used instead of training one."""
    paths: dict[str, dict[str, dict[str, Path]]] = {}
    for kind, sets in inputs.items():
        for variant, config in plan.spoc_variants(kind).items():
            for target in plan.targets:
                if kind == "synthetic" and variant == "spoc" and target in (shipped or {}):
                    paths.setdefault(kind, {}).setdefault(variant, {})[target] = shipped[target]
                    log(f"spoc {kind}: {variant} -> {target}: the zoo's, {shipped[target]}")
                    continue
                s = sets(target)
                out = plan.folder(run_dir, kind, variant, "none", target)
                paths.setdefault(kind, {}).setdefault(variant, {})[target], _ = train_or_retrain(
                    train_spoc,
                    real[target],
                    s.train,
                    s.val,
                    embedder if config.lambda_e else None,
                    target,
                    config,
                    out,
                    log=log,
                    seed=plan.seed,
                )
                log(f"spoc {kind}: {variant} -> {target}: {out}")
    return paths


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class SpocResults:
    """What :func:`evaluate_spoc` measured and what its report draws."""

    metrics: dict[str, Any]
    examples: dict[str, Example] = field(default_factory=dict)
    logs: dict[str, dict[str, Any]] = field(default_factory=dict)
    spectra: dict[str, np.ndarray] = field(default_factory=dict)


UNATTACKED = "unattacked"  # Table 4's control row: S unchanged


def _rate(detector: Detector, images: np.ndarray, cls: int) -> float:
    return float(np.mean(softmax_scores(detector, images).argmax(1) == cls))


class _Judge:
    """Every classifier's SAR toward one target, as written and after its camera's JPEG."""

    def __init__(self, dets: Mapping[str, Detector], camera: CameraJpeg, target: str) -> None:
        self.dets, self.jpeg = dets, camera(target)
        self.cls = next(iter(dets.values())).classes.index(target)

    def __call__(self, x: np.ndarray, adv: np.ndarray, judges: Sequence[str]) -> dict[str, Any]:
        after = recompress(adv, self.jpeg)
        return {
            "psnr": mean_psnr(x, adv),
            "plain": {j: _rate(self.dets[j], adv, self.cls) for j in judges},
            "camera_jpeg": {j: _rate(self.dets[j], after, self.cls) for j in judges},
        }


def _merge(cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Cells of one row that several models crafted (the ensemble block): judges joined,
    PSNR averaged."""
    psnrs = [c["psnr"] for c in cells if c["psnr"] is not None]
    return {
        "psnr": float(np.mean(psnrs)) if psnrs else None,
        **{g: {k: v for c in cells for k, v in c[g].items()} for g in ("plain", "camera_jpeg")},
    }


def mean_rows(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One table row averaged over the targets (SpoC: over 5 target models)."""
    psnrs = [r["psnr"] for r in rows if r["psnr"] is not None]
    out: dict[str, Any] = {"psnr": float(np.mean(psnrs)) if psnrs else None}
    for g in ("plain", "camera_jpeg"):
        out[g] = {k: float(np.mean([r[g][k] for r in rows])) for k in rows[0][g]}
    return out


Crafting = tuple[str, nn.Module, list[str]]
"""A model the attack is crafted on: its name, the module, the classifiers judging its output."""


class _Crafter:
    """The baselines of Table 4 toward one target on one set S."""

    def __init__(
        self,
        plan: SpocPlan,
        dets: Mapping[str, Detector],
        judge: _Judge,
        eps: Mapping[tuple[str, str], float],
    ) -> None:
        self.plan, self.dets, self.judge, self.eps = plan, dets, judge, eps

    def blocks(self) -> list[tuple[str, list[Crafting]]]:
        """(block, [(crafting model, its judges)]): each crafted_on detector judged by all;
        the ensemble of the others judged by each detector alone."""
        every = list(self.plan.classifiers)
        out = [(b, [(b, self.dets[b], every)]) for b in self.plan.crafted_on]
        if self.plan.section.ensemble:
            out.append((ENSEMBLE, [(f"{ENSEMBLE}-{c}", self.ensemble(c), [c]) for c in every]))
        return out

    def ensemble(self, left_out: str) -> LogitEnsemble:
        return LogitEnsemble([d for name, d in self.dets.items() if name != left_out])


def gradient_attack(plan: SpocPlan, method: str, eps: float) -> Attack:
    """A gradient baseline at ``eps`` with SpoC's settings, the section's params over them."""
    params = {
        "precision": "fp32",  # "auto" would time bf16 on every build; a loaded machine flips it
        "batch_size": plan.section.batch_size,
        **BASELINES.get(method, {}),
        **plan.section.params.get(method, {}),
    }
    return make_attack(method, eps=eps, **params)


def tune_eps(
    plan: SpocPlan, method: str, model: nn.Module, x: np.ndarray, target: int
) -> tuple[float, dict[float, float | None]]:
    """The eps of ``plan.section.eps`` whose mean PSNR on ``x`` (targeted at ``target``) is
    closest to the section's PSNR, and every eps's PSNR."""
    psnrs = {}
    for e in plan.section.eps:
        adv, _ = gradient_attack(plan, method, e)(model, x, target=target)
        psnrs[e] = mean_psnr(x, np.asarray(adv))
    return closest_eps(psnrs, plan.section.psnr), psnrs


def evaluate_spoc(
    plan: SpocPlan,
    detectors: Mapping[str, dict[str, Any]],
    gan_detectors: Mapping[str, dict[str, Any]],
    inputs: Mapping[str, Callable[[str], Inputs]],
    held_out: np.ndarray | None,
    spoc_paths: Mapping[str, Mapping[str, Mapping[str, Path]]],
    manifest: Manifest,
    run_dir: Path,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> SpocResults:
    """Tables 1-2 and 4-6 (module docstring): every method on every kind of S, per target,
    averaged over the targets."""
    s = plan.section
    dets = {a: load_detector(d["checkpoint"]) for a, d in detectors.items()}
    gans = {a: load_detector(d["checkpoint"]) for a, d in gan_detectors.items()}
    classes = dets[plan.classifiers[0]].classes
    for a, d in dets.items():
        if d.classes != classes:
            raise CamtraceError(f"spoc: the detectors need one class list; {a} has {d.classes}")
    camera = CameraJpeg(manifest)
    first = next(iter(inputs.values()))(plan.targets[0])
    t0 = classes.index(plan.targets[0])
    eps: dict[tuple[str, str], float] = {}
    eps_psnr: dict[str, dict[str, Any]] = {}
    crafter = _Crafter(plan, dets, _Judge(dets, camera, plan.targets[0]), eps)
    for method in s.gradient:
        for _, models in crafter.blocks():
            for name, model, _ in models:
                chosen, psnrs = tune_eps(plan, method, model, first.val, t0)
                eps[(method, name)] = chosen
                eps_psnr[f"{method} on {name}"] = {"chosen": chosen, "psnr": psnrs}
                log(f"spoc: {method} on {name}: eps {chosen:g} (PSNR by eps {psnrs})")
    results = SpocResults({})
    table4: dict[str, Any] = {}
    table5: dict[str, list] = {}
    synthetic_spoofs: list[np.ndarray] = []  # SpoC's, toward every target (Table 1)
    held_rows, held_adv = [], []
    validation: dict[str, dict[str, list]] = {}  # "kind -> target": variant -> curve
    for kind, sets in inputs.items():
        per_row: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for target in plan.targets:
            t, judge = classes.index(target), _Judge(dets, camera, target)
            crafter.judge = judge
            x = sets(target)
            # the control: S as it is, and after the target camera's JPEG alone (its tables
            # are a trace of the target too, so "after JPEG" reads against this row)
            per_row.setdefault(("none", UNATTACKED), []).append(
                judge(x.test, x.test, plan.classifiers)
            )
            baselines = _baselines(plan, crafter, x, target, t, run_dir, kind, log)
            for (block, method), cell in baselines:
                per_row.setdefault((block, method), []).append(cell)
            for variant, paths in spoc_paths[kind].items():
                attack = make_attack("spoc", generator=paths[target], batch_size=s.batch_size)
                adv = np.asarray(attack(dets[plan.classifiers[0]], x.test)[0])
                per_row.setdefault(("none", variant), []).append(
                    judge(x.test, adv, plan.classifiers)
                )
                trained = read_log(paths[target].parent)
                curves = validation.setdefault(f"{kind} -> {target}", {})
                curves[variant] = trained.get("validation", [])
                if variant != "spoc":
                    continue
                results.logs[f"{kind} -> {target}"] = trained
                if kind == "synthetic":
                    synthetic_spoofs.append(adv)
                    if held_out is not None:
                        h = np.asarray(attack(dets[plan.classifiers[0]], held_out)[0])
                        held_rows.append(judge(held_out, h, plan.classifiers))
                        held_adv.append(h)
                if s.examples and target == plan.targets[0]:
                    k, head = s.examples, dets[plan.classifiers[0]]
                    results.examples[kind] = Example(
                        x.test[:k],
                        adv[:k],
                        [classes[i] for i in softmax_scores(head, x.test[:k]).argmax(1)],
                        [classes[i] for i in softmax_scores(head, adv[:k]).argmax(1)],
                    )
            log(f"spoc {kind} -> {target}: measured")
        rows = [
            {"block": b, "method": m, **mean_rows(cells), "per_target": cells}
            for (b, m), cells in per_row.items()
        ]
        variants = set(plan.spoc_variants(kind)) - {"spoc"}  # Table 5's, not Table 4's
        table4[kind] = [r for r in rows if r["method"] not in variants]
        table5[kind] = [r for r in rows if r["block"] == "none" and r["method"] != UNATTACKED]
    metrics: dict[str, Any] = {
        "classifiers": list(plan.classifiers),
        "targets": list(plan.targets),
        "patch_size": plan.patch_size,
        "psnr_target": s.psnr,
        "inputs": list(inputs),
        "eps": eps_psnr,
        "table4": table4,
        "table5": {k: v for k, v in table5.items() if len(v) > 1},
        "validation": validation,
        "checkpoints": {
            k: {v: {t: str(p) for t, p in ps.items()} for v, ps in vs.items()}
            for k, vs in spoc_paths.items()
        },
        "paper": SPOC_2021,
    }
    if synthetic_spoofs:
        clean, spoofed = inputs["synthetic"](plan.targets[0]).test, np.concatenate(synthetic_spoofs)
        if gans:
            metrics["table1"] = _tpr(gans, clean, spoofed)
        results.spectra = {"synthetic": clean, "spoofed by SpoC": spoofed}
    if held_rows:
        if gans:
            metrics["table2"] = _tpr(gans, held_out, np.concatenate(held_adv))
        metrics["table6"] = [{"block": "none", "method": "spoc", **mean_rows(held_rows)}]
        results.spectra["held-out source"] = held_out
    results.metrics = metrics
    return results


def _tpr(gans: Mapping[str, Detector], before: np.ndarray, after: np.ndarray) -> dict[str, Any]:
    """True-positive rate of the GAN-image detectors (share read as synthetic), SpoC Tables
    1-2; ``after``: the spoofs toward every target, stacked."""
    return {
        "n_before": len(before),
        "n_after": len(after),
        "before": {a: _rate(g, before, g.classes.index(SYNTHETIC)) for a, g in gans.items()},
        "after": {a: _rate(g, after, g.classes.index(SYNTHETIC)) for a, g in gans.items()},
    }


def _baselines(
    plan: SpocPlan,
    crafter: _Crafter,
    x: Inputs,
    target: str,
    t: int,
    run_dir: Path,
    kind: str,
    log: Callable[[str], None],
) -> list[tuple[tuple[str, str], dict[str, Any]]]:
    """Every baseline of Table 4 toward ``target``: (block, method) and its judged cell."""
    s, out = plan.section, []
    for block, models in crafter.blocks():
        for method in s.gradient:
            cells = []
            for name, model, judges in models:
                attack = gradient_attack(plan, method, crafter.eps[(method, name)])
                adv = np.asarray(attack(model, x.test, target=t)[0])
                cells.append(crafter.judge(x.test, adv, judges))
            out.append(((block, method), _merge(cells)))
        for method in s.generative:
            if block == ENSEMBLE and method not in ENSEMBLE_GENERATIVE:
                continue
            cells = []
            for name, model, judges in models:
                members = list(getattr(model, "members", [model]))
                path, _ = train_or_retrain(
                    train_generator,
                    method,
                    members,
                    x.train,
                    x.val,
                    target,
                    _generator_config(plan, method),
                    plan.folder(run_dir, kind, method, name, target),
                    log=log,
                    seed=plan.seed,
                )
                attack = make_attack(method, generator=path, batch_size=s.batch_size)
                adv = np.asarray(attack(model, x.test)[0])
                cells.append(crafter.judge(x.test, adv, judges))
            out.append(((block, method), _merge(cells)))
    return out


def _generator_config(plan: SpocPlan, method: str) -> GeneratorConfig:
    """GAP at its budget (stopped at SAR 95% or the iteration cap); Adv-Cam-Id stopped as
    soon as its validation PSNR reaches the section's, whatever its SAR (SpoC supplement
    Sec. C: "stop the training when the PSNR is greater than or equal to 31dB"), or at the
    iteration cap."""
    s = plan.section
    every = max(1, s.generator_iterations // 10)
    budget = {"eps": s.gap_eps} if method == "gap" else {"stop_psnr": s.psnr, "stop_sar": 0.0}
    return GeneratorConfig(
        batch_size=s.generator_batch,
        iterations=s.generator_iterations,
        val_every=every,
        save_every=every,
        **budget,
    )


# -- in an experiment -----------------------------------------------------------------------------


def gan_detectors(
    plan: SpocPlan,
    config: ExperimentConfig,
    split: SplitRun,
    synthetic: Manifest,
    run_dir: Path,
    clock: Clock,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    """The two GAN-image detectors trained on real photos vs the training sources' images
    (the manifests' own splits), one patch of the section's size per image."""
    from camtrace.data.synthetic import real_vs_synthetic

    protocol = get_protocol("gan", size=plan.patch_size, count=1)
    train = TrainConfig(
        **{**config.train.given(), **plan.section.gan_train.given(), "seed": split.seed}
    )
    archs = plan.section.gan_detectors
    specs = [DetectorSpec(a, protocol, train, SvmConfig(enabled=False), a) for a in archs]
    given = config.replace(split=SplitConfig(protocol="given"))
    both = real_vs_synthetic(split.manifest, synthetic)
    run = identify_on_split(
        given, specs, both, split.seed, run_dir / "gan-detectors", clock, progress, "gan: "
    )
    return run.detectors


def run_spoc(
    plan: SpocPlan,
    config: ExperimentConfig,
    split: SplitRun,
    run_dir: Path,
    clock: Clock,
    progress: bool,
    log: Callable[[str], None],
) -> SpocResults:
    """SpoC's Tables 1-6: the synthetic sources and the GAN-image detectors, the embedder
    (cached), SpoC's generators (no detector), then every method measured."""
    from camtrace.training.gan_sources import SourceConfig, make_synthetic

    s, workdir = plan.section, Path(config.workdir)
    detectors = split.detectors
    store = PatchStore.open(detectors[plan.classifiers[0]]["patch_store"])
    real = {t: target_patches(store, t, plan) for t in plan.targets}
    inputs: dict[str, Callable[[str], Inputs]] = {}
    held_out, gans = None, {}
    if "synthetic" in s.inputs:
        source = SourceConfig(
            size=s.synthetic.size,
            iterations=s.synthetic.iterations,
            train=s.synthetic.train,
            val=s.synthetic.val,
            eval=s.synthetic.eval,
            seed=split.seed,
        )
        folder = workdir / f"synthetic-{split.manifest.digest()[:12]}"
        synthetic = make_synthetic(split.manifest, folder, config=source, progress=progress)
        clock.lap("spoc: synthetic sources")
        fixed, held_out = synthetic_inputs(synthetic, plan)
        inputs["synthetic"] = lambda _target: fixed
        if s.gan_detectors:
            gans = gan_detectors(plan, config, split, synthetic, run_dir, clock, progress)
    if "real" in s.inputs:
        inputs["real"] = lambda target: real_inputs(store, target, plan)
    e = s.embedder
    protocol = get_protocol("bondi", size=plan.patch_size, count=e.count)
    many = (
        None
        if e.path
        else preset_patches(
            config, e.preset, e.shots, protocol, split.seed, progress, "spoc.embedder"
        )
    )
    embedder = pretrain_embedder(many, plan, workdir, progress)
    clock.lap("spoc: embedder (cached)")
    shipped = zoo_spoc(plan, split.manifest)
    paths = train_spoc_all(plan, inputs, real, embedder, run_dir, log, shipped)
    clock.lap("spoc: train")
    results = evaluate_spoc(
        plan, detectors, gans, inputs, held_out, paths, split.manifest, run_dir, progress, log
    )
    results.metrics["embedder"] = str(embedder)
    results.metrics["table3"] = {
        a: head_accuracy(d["identification"])[0] for a, d in detectors.items()
    }
    results.metrics["gan_detectors"] = {
        a: {"checkpoint": d["checkpoint"], "accuracy": head_accuracy(d["identification"])[0]}
        for a, d in gans.items()
    }
    clock.lap("spoc: evaluate")
    return results
