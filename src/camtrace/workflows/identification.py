"""Identification, the core every experiment shares: the data section prepared (simulated,
indexed or read), the detectors of a config resolved into specs, trained (or loaded, or used
as shipped) and measured on one split, and the spread over several splits. The sections of
an experiment (``workflows/sections.py``) start from what this module returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from camtrace.data.bench import get_bench
from camtrace.data.manifest import Manifest
from camtrace.data.patch_store import PatchStore, build_patch_store, store_name
from camtrace.data.patches import PatchProtocol, get_protocol
from camtrace.data.splits import split_manifest
from camtrace.defenses import DefenseConfig, make_objective
from camtrace.errors import CamtraceError
from camtrace.evaluation.identification import evaluate_identifier
from camtrace.models.registry import model_spec
from camtrace.models.zoo import pretrained
from camtrace.training.engine import TrainConfig
from camtrace.training.state import StaleTrainingState
from camtrace.workflows.config import (
    EvaluateConfig,
    ExperimentConfig,
    SvmConfig,
)


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


class Clock:
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
    clock: Clock,
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


def write_bytes_copy(src: Path, dst: Path) -> None:
    """Copy a checkpoint atomically (the run folder keeps its own copy)."""
    from camtrace.io import atomic_path

    with atomic_path(dst) as tmp:
        tmp.write_bytes(src.read_bytes())
