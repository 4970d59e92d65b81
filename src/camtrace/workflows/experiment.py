"""Experiments: one YAML config and a seed reproduce a run, and the run records what it ran.

A config names the data (simulated or indexed), the split protocol, the patch protocol,
the detector and its training, and what to evaluate. ``run_experiment`` caches every
stage under ``workdir`` (re-running skips what is done) and writes
``runs/<name>/{metrics.json, report.html, config.yaml, detector.safetensors}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from camtrace.data.bench import get_bench
from camtrace.data.manifest import Manifest
from camtrace.data.patch_store import PatchStore, build_patch_store, store_name
from camtrace.data.patches import PatchProtocol, get_protocol
from camtrace.data.splits import split_manifest, split_summary
from camtrace.defenses import DefenseConfig, make_objective
from camtrace.errors import CamtraceError
from camtrace.evaluation.identification import evaluate_identifier
from camtrace.models.registry import model_spec
from camtrace.models.zoo import pretrained
from camtrace.schema import load_yaml
from camtrace.training.engine import TrainConfig, pick_device
from camtrace.training.precision import environment
from camtrace.training.state import StaleTrainingState
from camtrace.workflows.attack_plan import plan_attacks
from camtrace.workflows.attack_report import add_attack_report
from camtrace.workflows.attack_run import run_attacks
from camtrace.workflows.audit import add_audit_section, audit, audit_summary
from camtrace.workflows.config import (
    EvaluateConfig,
    ExperimentConfig,
    SplitConfig,
    SvmConfig,
    builtin_configs,
    on_bench,
    parse_config,
)
from camtrace.workflows.defense_report import add_defense_report
from camtrace.workflows.evaluate import add_identification_report
from camtrace.workflows.generator_report import add_generator_report
from camtrace.workflows.generator_run import (
    GeneratorPlan,
    GeneratorResults,
    evaluate_generators,
    plan_generators,
    train_generators,
)
from camtrace.workflows.report import Report, percent, write_run
from camtrace.workflows.robustness import (
    check_robustness,
    launched_rank,
    run_robustness,
    share_from_rank_zero,
)
from camtrace.workflows.robustness_report import add_robustness_report
from camtrace.workflows.spoc_inputs import Inputs, real_inputs, synthetic_inputs, target_patches
from camtrace.workflows.spoc_plan import SpocPlan, plan_spoc
from camtrace.workflows.spoc_report import add_spoc_report
from camtrace.workflows.spoc_run import (
    SpocResults,
    evaluate_spoc,
    pretrain_embedder,
    train_spoc_all,
)
from camtrace.workflows.spoof_section import add_spoof_report, run_spoof

AUDIT_REPORT = "audit/report.html"  # with ``audit: true``, relative to the run folder


def load_config(source: str | Path) -> ExperimentConfig:
    """Read a YAML config from a path, or a built-in one by name (e.g. ``quickstart``), as the
    typed :class:`~camtrace.workflows.config.ExperimentConfig` (a bad key or value fails here,
    in one line naming the file); change keys with ``config.replace(...)``."""
    path = Path(source)
    if not path.is_file():
        builtin = resources.files("camtrace.configs") / f"{source}.yaml"
        if not builtin.is_file():
            raise CamtraceError(
                f"{source}: no such config file or built-in config; built-ins: "
                f"{', '.join(builtin_configs())}"
            )
        text = builtin.read_text()
    else:
        text = path.read_text()
    raw = load_yaml(text, str(source))
    try:
        return parse_config(raw, str(source))
    except CamtraceError as e:
        raise CamtraceError(f"{source}: {e}") from None


def prepare_manifest(config: ExperimentConfig, seed: int, progress: bool) -> Manifest:
    """The data section: simulate SimCam, index a real dataset, or read a manifest."""
    data = config.data
    if data.source == "simulate":
        from camtrace.data.simcam import dataset_name, simulate

        return simulate(
            data.preset,
            Path(config.workdir) / dataset_name(data.preset, data.shots, data.size, seed),
            shots=data.shots,
            seed=seed,
            size=data.size,
            scenes_dir=data.scenes,
            progress=progress,
        )
    if data.source == "index":
        from camtrace.data.layouts import index_dataset

        return index_dataset(
            data.root,
            data.layout,
            scenes_csv=data.scenes_csv,
            multi_instance_only=data.multi_instance_only,
        )
    return Manifest.load(data.path)


def prepare_unseen(
    config: ExperimentConfig, protocol: PatchProtocol, seed: int, progress: bool
) -> PatchStore | None:
    """Patches of the camera models no part of training used (``generators.unseen``): its
    preset shot with the data section's scenes, size and seed, cut with ``protocol``."""
    unseen = config.generators and config.generators.unseen
    if unseen is None:
        return None
    return preset_patches(
        config, unseen.preset, unseen.shots, protocol, seed, progress, "generators.unseen"
    )


def preset_patches(
    config: ExperimentConfig,
    preset: str,
    shots: int,
    protocol: PatchProtocol,
    seed: int,
    progress: bool,
    where: str,
) -> PatchStore:
    """Patches of another SimCam ``preset`` (``where``: the config key asking), shot with the
    data section's scenes, size and seed, cut with ``protocol``; cached in the workdir."""
    if config.data.source != "simulate":
        raise CamtraceError(
            f"{where}: simulated with the data section's scenes and size, so it needs "
            "data.source simulate; drop it for real data"
        )
    data = config.data.replace(preset=preset, shots=shots)
    manifest = prepare_manifest(config.replace(data=data), seed, progress)
    cut = f"{protocol.name}{protocol.size}-{protocol.count}"
    key = f"patches-{Path(preset).stem}-{cut}-{manifest.digest()[:12]}"
    return build_patch_store(
        manifest, Path(config.workdir) / key, protocol=protocol, seed=seed, progress=progress
    )


@dataclass(frozen=True)
class DetectorSpec:
    """One detector of the experiment with its patches, training and SVMs resolved."""

    arch: str
    protocol: PatchProtocol
    train: TrainConfig
    svm: SvmConfig
    name: str
    defense: DefenseConfig | None = None
    pretrained: str | None = None  # a zoo detector, used as shipped


def detector_specs(config: ExperimentConfig) -> list[DetectorSpec]:
    """The ``detector`` (one) or ``detectors`` (a zoo), each with its patches: its own, else
    the top-level ones, else its architecture's native protocol."""
    out: list[DetectorSpec] = []
    for i, d in enumerate(config.zoo()):
        if d.pretrained:
            weights = pretrained(d.pretrained)
            arch = weights.arch
            protocol = get_bench().protocol(weights.patch_size)
        else:
            arch = d.arch.lower()
            p = d.patches or config.patches
            name = p.protocol if p and p.protocol else model_spec(arch).protocol
            protocol = get_protocol(name, size=p and p.size, count=p and p.count)
        if d.label() in [s.name for s in out]:
            raise CamtraceError(
                f"detectors[{i}]: the name {d.label()!r} is taken; give each detector a name:"
            )
        out.append(
            DetectorSpec(
                arch,
                protocol,
                config.train_config(d),
                config.svm_config(d),
                d.label(),
                d.defense,
                d.pretrained,
            )
        )
    return out


class _Clock:
    """Seconds per stage, logged as each stage ends."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log, self.t0, self.timings = log, time.perf_counter(), {}

    def lap(self, stage: str) -> None:
        spent = time.perf_counter() - self.t0 - sum(self.timings.values())
        self.timings[stage] = round(spent, 2)
        self.log(f"{stage}: done in {self.timings[stage]:.1f} s")


@dataclass
class SplitRun:
    """The identification experiment on one split (seed): its manifest and detectors."""

    seed: int
    manifest: Manifest
    manifest_path: Path
    detectors: dict[str, dict[str, Any]]
    histories: dict[str, list[dict]]


def identify_on_split(
    config: ExperimentConfig,
    specs: list[DetectorSpec],
    manifest: Manifest,
    seed: int,
    run_dir: Path,
    clock: _Clock,
    progress: bool,
    stage: str = "",
) -> SplitRun:
    """Split ``manifest`` with ``seed``, cut patches, train and evaluate every detector."""
    from camtrace.training.detector import train_detector

    manifest = split_manifest(manifest, config.split.protocol_options(), seed)
    split_path = manifest.save(run_dir / "manifest.csv")
    clock.lap(f"{stage}split")
    workdir = Path(config.workdir)
    stores: dict[str, PatchStore] = {}
    detectors: dict[str, dict[str, Any]] = {}
    histories: dict[str, list[dict]] = {}
    for spec in specs:
        arch, name, protocol = spec.arch, spec.name, spec.protocol
        key = store_name(manifest, protocol)
        if key not in stores:
            stores[key] = build_patch_store(
                Manifest.load(split_path),
                workdir / key,
                protocol=protocol,
                seed=seed,
                progress=progress,
            )
            clock.lap(f"{stage}patches {protocol.name} {protocol.size}px")
        store = stores[key]
        if spec.pretrained:
            detectors[name] = use_pretrained(spec, store, manifest, config.evaluate)
            clock.lap(f"{stage}evaluate {name}")
            continue
        train_args = dict(
            store=store,
            arch=arch,
            out_dir=run_dir / "train" / name,
            config=spec.train.replace(seed=seed),
            svm=spec.svm.enabled,
            progress=progress,
            objective=None if spec.defense is None else make_objective(spec.defense),
            **({} if spec.svm.Cs is None else {"Cs": spec.svm.Cs}),
        )
        try:
            trained = train_detector(**train_args)
        except StaleTrainingState as stale:  # the config changed since the cached training
            clock.log(f"{stale}: training {name} afresh")
            trained = train_detector(**train_args, resume=False)
        path = run_dir / ("detector.safetensors" if spec is specs[0] else f"{name}.safetensors")
        write_bytes_copy(trained.checkpoint, path)
        clock.lap(f"{stage}train {name}")
        result = evaluate_identifier(
            trained.detector, store, split=config.evaluate.split, ks=config.evaluate.voting_ks
        )
        clock.lap(f"{stage}evaluate {name}")
        histories[name] = trained.result.history
        detectors[name] = {
            "arch": arch,
            "defense": trained.detector.card.get("defense", {"kind": "none"}),
            "checkpoint": str(path),
            "classes": trained.detector.classes,
            "patch_size": store.patch_size,
            "patch_store": str(store.path),
            "patches": len(store),
            "best_epoch": trained.result.best_epoch,
            "precision": trained.detector.card["training"]["precision"],
            "svm": trained.svm,
            "train_patches_per_second": round(trained.result.patches_per_second, 1),
            "skipped_images": store.summary.get("skipped", []),
            "identification": result,
        }
    return SplitRun(seed, manifest, split_path, detectors, histories)


def use_pretrained(
    spec: DetectorSpec, store: PatchStore, manifest: Manifest, evaluate: EvaluateConfig
) -> dict[str, Any]:
    """A zoo detector in a run: checked against the run's camera models, evaluated on its
    patches, never trained; the run's entry points to the verified shipped weights."""
    from camtrace.models.checkpoint import load_detector

    path = pretrained(spec.pretrained).verified_path()  # sha256 checked once
    detector = load_detector(path)
    if list(detector.classes) != list(manifest.models):
        raise CamtraceError(
            f"detectors: {spec.pretrained} identifies {get_bench().name}'s camera models "
            f"({', '.join(detector.classes)}), not this data's ({', '.join(manifest.models)}); "
            "use the bench's data (camtrace bench) or train a detector on yours"
        )
    result = evaluate_identifier(detector, store, split=evaluate.split, ks=evaluate.voting_ks)
    card = detector.card
    return {
        "arch": detector.arch,
        "pretrained": spec.pretrained,
        "defense": card.get("defense", {"kind": "none"}),
        "checkpoint": str(path),
        "classes": detector.classes,
        "patch_size": store.patch_size,
        "patch_store": str(store.path),
        "patches": len(store),
        "best_epoch": card.get("best_epoch"),
        "precision": card["training"]["precision"],
        "svm": None,
        "train_patches_per_second": None,
        "skipped_images": store.summary.get("skipped", []),
        "identification": result,
    }


def head_accuracy(identification: dict[str, Any]) -> tuple[float, float]:
    """Single-patch and image (majority vote) accuracy of the primary classifier."""
    head = identification[identification["primary"]]
    return head["patch"]["accuracy"], head["image"]["accuracy"]


def spread(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (ddof 1), min and max of per-split accuracies."""
    v = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "values": [float(x) for x in v],
    }


def splits_summary(runs: list[SplitRun]) -> dict[str, Any]:
    """Bondi's protocol over several random splits: mean and spread of each detector's
    single-patch and image accuracy."""
    accuracy = {
        arch: [head_accuracy(r.detectors[arch]["identification"]) for r in runs]
        for arch in runs[0].detectors
    }
    return {
        "seeds": [r.seed for r in runs],
        "manifests": [str(r.manifest_path) for r in runs],
        "detectors": {
            arch: {
                "single_patch": spread([p for p, _ in acc]),
                "image": spread([i for _, i in acc]),
            }
            for arch, acc in accuracy.items()
        },
    }


def run_experiment(
    config: ExperimentConfig | Mapping[str, Any],
    runs_dir: str | Path = "runs",
    progress: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """Run an identification experiment (one detector or a zoo); returns its metrics.

    Writes ``runs/<name>/{metrics.json, report.html, config.yaml}`` and the checkpoints
    (``detector.safetensors`` for the first detector, ``<name>.safetensors`` for the others
    of a zoo). With ``split.splits: N`` the identification is repeated on N splits (seeds
    seed .. seed+N-1, the later ones under ``split-<k>/``) and ``metrics["splits"]`` holds
    their mean and spread; the attacks and the per-detector details are those of the first
    split, and so are the generators of a ``generators`` section
    (``runs/<name>/generators/``, measured in ``metrics["generators"]``), and the robustness
    matrix of a ``robustness`` section (``metrics["robustness"]``). Under ``torchrun`` (a
    robustness section needed) rank 0 runs the experiment and the other ranks wait for its
    detectors, share the matrix's cells with it and return ``{}``; rank 0 writes the run
    folder.
    ``config.yaml`` is the config as given, every default written out.
    """
    given = parse_config(config)
    config = on_bench(given)
    name, seed = config.name, config.seed
    run_dir = Path(runs_dir) / name
    clock = _Clock(log)
    specs = detector_specs(config)
    sizes = {s.name: s.protocol.size for s in specs}
    gradient_free = [s.name for s in specs if model_spec(s.arch).handcrafted]
    attack_plan = (
        None if config.attacks is None else plan_attacks(config.attacks, sizes, gradient_free)
    )
    check_robustness(config.robustness, list(sizes))
    if launched_rank() > 0:  # torchrun's other ranks: their share of the matrix's cells
        run_robustness(config.robustness, **share_from_rank_zero(None), seed=seed, log=log)
        return {}
    manifest = prepare_manifest(config, seed, progress)
    generator_plan = plan_generators_of(config, specs, manifest)
    spoc_plan = (
        plan_spoc(config.spoc, sizes, manifest.models, seed) if config.spoc is not None else None
    )
    clock.lap("data")
    audited = audit(manifest, run_dir / "audit", progress=progress) if config.audit else None
    if audited is not None:
        clock.lap("audit")
    runs = [
        identify_on_split(
            config,
            specs,
            manifest,
            seed + k,
            run_dir / f"split-{k}" if k else run_dir,
            clock,
            progress,
            f"split {k}: " if k else "",
        )
        for k in range(config.split.splits)
    ]
    first = runs[0]
    detectors = first.detectors
    attacks = (
        run_attacks(attack_plan, detectors, first.manifest, seed, progress, log)
        if attack_plan
        else None
    )
    if attacks:
        clock.lap("attacks")
    generators = (
        run_generators(generator_plan, config, specs, first, run_dir, clock, progress, log)
        if generator_plan
        else None
    )
    spoc = run_spoc(spoc_plan, config, first, run_dir, clock, progress, log) if spoc_plan else None
    spoofed = (
        run_spoof(config.spoof, detectors, first.manifest, run_dir, progress, log)
        if config.spoof
        else None
    )
    if spoofed:
        clock.lap("spoof")
    robustness = None
    if config.robustness:
        trained = {"detectors": detectors, "generators": generator_paths(generators)}
        robustness = run_robustness(
            config.robustness, **share_from_rank_zero(trained), seed=seed, log=log
        )
        clock.lap("robustness")
    metrics = {
        "command": f"camtrace run ({name})",
        "name": name,
        "seed": seed,
        "identification": detectors[specs[0].name]["identification"],
        "detectors": detectors,
        "data": {
            "manifest": str(first.manifest_path),
            "manifest_digest": first.manifest.digest(),
            "splits": split_summary(first.manifest),
        },
        **({"splits": splits_summary(runs)} if len(runs) > 1 else {}),
        "timings_s": clock.timings,
        "environment": environment(
            pick_device(specs[0].train.device),
            {arch: d["precision"] for arch, d in detectors.items()},
        ),
        **({"attacks": attacks.metrics} if attacks else {}),
        **({"generators": generators.metrics} if generators else {}),
        **({"robustness": robustness} if robustness else {}),
        **({"spoc": spoc.metrics} if spoc else {}),
        **({"spoof": spoofed} if spoofed else {}),
        **({"audit": audit_summary(audited, AUDIT_REPORT)} if audited is not None else {}),
    }
    report = build_report(given.to_dict(), metrics, first.histories)
    if attacks:
        add_attack_report(report, attacks.metrics, attacks.examples)
    add_defense_report(report, metrics)
    if generators:
        add_generator_report(report, generators.metrics, generators.examples, generators.logs)
    if robustness:
        add_robustness_report(report, robustness)
    if spoc:
        add_spoc_report(report, spoc)
    if spoofed:
        add_spoof_report(report, spoofed)
    if audited is not None:
        add_audit_section(report, audited, AUDIT_REPORT)
    write_run(run_dir, metrics, report, given.to_dict())
    return metrics


def generator_paths(generators: GeneratorResults | None) -> dict[str, dict[str, str]]:
    """The trained generators of a ``generators`` section, by method and target, for the
    robustness matrix's generative column."""
    if generators is None:
        return {}
    m = generators.metrics
    return {m["method"]: {t: row["checkpoint"] for t, row in m["targets"].items()}}


def plan_generators_of(
    config: ExperimentConfig, specs: list[DetectorSpec], manifest: Manifest
) -> GeneratorPlan | None:
    """The ``generators`` section checked against the detectors and camera models."""
    if config.generators is None:
        return None
    sizes = {s.name: s.protocol.size for s in specs}
    archs = {s.name: s.arch for s in specs}
    return plan_generators(config.generators, sizes, manifest.models, config.seed, archs)


def run_generators(
    plan: GeneratorPlan,
    config: ExperimentConfig,
    specs: list[DetectorSpec],
    split: SplitRun,
    run_dir: Path,
    clock: _Clock,
    progress: bool,
    log: Callable[[str], None],
) -> GeneratorResults:
    """Train (or resume, or keep) the generators, then measure them on seen and unseen
    camera models (Chen Tables 3-4)."""
    paths = train_generators(plan, split.detectors, run_dir, progress, log)
    clock.lap("generators: train")
    protocol = next(s.protocol for s in specs if s.name == plan.detectors[0])
    unseen = prepare_unseen(config, protocol, split.seed, progress)
    if unseen is not None:
        clock.lap("generators: unseen data")
    results = evaluate_generators(plan, paths, split.detectors, split.manifest, unseen, log)
    clock.lap("generators: evaluate")
    return results


def gan_detectors(
    plan: SpocPlan,
    config: ExperimentConfig,
    split: SplitRun,
    synthetic: Manifest,
    run_dir: Path,
    clock: _Clock,
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
    clock: _Clock,
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
    paths = train_spoc_all(plan, inputs, real, embedder, run_dir, log)
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


def train_attack(
    config: ExperimentConfig | Mapping[str, Any],
    runs_dir: str | Path = "runs",
    progress: bool = True,
    log: Any = print,
) -> dict[str, Path]:
    """``camtrace train-attack``: the config's detectors trained (or loaded when done) as
    :func:`run_experiment` does on its first split, then its generators only; returns the
    checkpoint of each target."""
    config = on_bench(parse_config(config))
    if config.generators is None:
        raise CamtraceError(
            f"{config.name}: the config has no generators section; add one (README, config "
            "reference: generators)"
        )
    run_dir = Path(runs_dir) / config.name
    specs = detector_specs(config)
    manifest = prepare_manifest(config, config.seed, progress)
    plan = plan_generators_of(config, specs, manifest)
    clock = _Clock(log)
    split = identify_on_split(config, specs, manifest, config.seed, run_dir, clock, progress)
    paths = train_generators(plan, split.detectors, run_dir, progress, log)
    clock.lap("generators: train")
    return paths


def write_bytes_copy(src: Path, dst: Path) -> None:
    """Copy a checkpoint atomically (the run folder keeps its own copy)."""
    from camtrace.io import atomic_path

    with atomic_path(dst) as tmp:
        tmp.write_bytes(src.read_bytes())


def build_report(
    config: Mapping[str, Any], metrics: dict[str, Any], histories: dict[str, list[dict]]
) -> Report:
    """The HTML report of an identification experiment (one detector or a zoo)."""
    from camtrace.workflows import plots

    dets = metrics["detectors"]
    report = Report(
        f"camtrace: {metrics['name']}", "Camera-model identification (Bondi et al. 2017 protocol)"
    )
    rows = []
    for arch, d in dets.items():
        ident = d["identification"]
        head = ident[ident["primary"]]
        rows.append(
            {
                "detector": arch,
                "patch size": d["patch_size"],
                "classifier": ident["primary"],
                "single-patch accuracy": percent(head["patch"]["accuracy"]),
                "image accuracy (vote)": percent(head["image"]["accuracy"]),
                "eval images / patches": f"{ident['images']} / {ident['patches']}",
            }
        )
    report.table(rows, caption="Accuracy on the scene- and device-disjoint evaluation split")
    if "splits" in metrics:
        add_splits_table(report, metrics["splits"])
    report.key_values(
        {
            "seed": metrics["seed"],
            "manifest digest": metrics["data"]["manifest_digest"][:16],
            "total time": f"{sum(metrics['timings_s'].values()):.0f} s",
            "device": metrics["environment"]["device"],
        },
        caption="Run",
    )
    for arch, d in dets.items():
        add_identification_report(report, d["identification"], d["classes"], label=f"- {arch}")
        history = histories.get(arch) or []
        if history:
            epochs = [h["epoch"] for h in history]
            report.figure(
                plots.line_figure(
                    epochs,
                    {
                        "train loss": [h["train_loss"] for h in history],
                        "validation loss": [h["val_loss"] for h in history],
                    },
                    f"Training curve - {arch}",
                    "epoch",
                    "cross-entropy",
                ),
                caption=f"Best validation loss at epoch {d['best_epoch']} (kept).",
            )
        if d.get("svm"):
            svm = d["svm"]
            report.paragraph(
                f"SVM battery: C = {svm['C']} chosen on validation patch accuracy ("
                + ", ".join(f"C={k}: {percent(v)}" for k, v in svm["val_patch_accuracy"].items())
                + ")."
            )
        report.paragraph(
            f"{d['patches']} patches of {d['patch_size']}x{d['patch_size']}; "
            f"{len(d['skipped_images'])} unreadable images skipped."
        )
    report.heading("Data")
    splits = metrics["data"]["splits"]
    report.table(
        [
            {
                "split": s,
                "images": splits["images"].get(s, 0),
                "scenes": splits["scenes"].get(s, 0),
                "devices": splits["devices"].get(s, 0),
            }
            for s in splits["images"]
        ],
        caption="Split (Bondi Sec. III-A: evaluation on one held-out device per model, "
        "unseen scenes)",
    )
    report.heading("Timings")
    report.table([{"stage": k, "seconds": v} for k, v in metrics["timings_s"].items()])
    report.heading("Configuration")
    report.paragraph(yaml.safe_dump(dict(config), sort_keys=False))
    return report


def add_splits_table(report: Report, splits: dict[str, Any]) -> None:
    """Mean and spread of the accuracies over the random splits (Bondi Sec. III-A)."""

    def cell(s: dict[str, Any]) -> str:
        return (
            f"{percent(s['mean'])} ± {100 * s['std']:.2f} "
            f"({percent(s['min'])} - {percent(s['max'])})"
        )

    report.table(
        [
            {
                "detector": arch,
                "single-patch accuracy": cell(d["single_patch"]),
                "image accuracy (vote)": cell(d["image"]),
            }
            for arch, d in splits["detectors"].items()
        ],
        caption=f"Over {len(splits['seeds'])} random splits (seeds "
        f"{splits['seeds'][0]}-{splits['seeds'][-1]}): mean ± standard deviation "
        "(min - max); the other tables are those of the first split",
    )
