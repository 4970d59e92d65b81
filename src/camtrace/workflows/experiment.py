"""Experiments: one YAML config and a seed reproduce a run, and the run records what it ran.

A config names the data (simulated or indexed), the split protocol, the patch protocol,
the detector and its training, and what to evaluate. ``run_experiment`` caches every
stage under ``workdir`` (re-running skips what is done) and writes
``runs/<name>/{metrics.json, report.html, config.yaml, detector.safetensors}``.
"""

from __future__ import annotations

import copy
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from camtrace.data.manifest import Manifest
from camtrace.data.patch_store import PatchStore, build_patch_store
from camtrace.data.splits import split_manifest, split_summary
from camtrace.errors import CamtraceError
from camtrace.evaluation.identification import evaluate_identifier
from camtrace.io import write_text
from camtrace.models.registry import model_spec
from camtrace.workflows.attack_experiment import parse_attacks, run_attacks
from camtrace.workflows.evaluate import add_identification_report
from camtrace.workflows.report import Report, percent, write_run

SECTIONS = (
    "name",
    "seed",
    "workdir",
    "data",
    "split",
    "patches",
    "detector",
    "detectors",
    "train",
    "svm",
    "evaluate",
    "attacks",
)


def builtin_configs() -> list[str]:
    """Names of the configs shipped with camtrace (``camtrace run NAME``)."""
    return sorted(
        p.name[:-5]
        for p in resources.files("camtrace.configs").iterdir()
        if p.name.endswith(".yaml")
    )


def load_config(source: str | Path) -> dict[str, Any]:
    """Read a YAML config from a path, or a built-in one by name (e.g. ``quickstart``)."""
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
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CamtraceError(f"{source}: invalid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise CamtraceError(
            f"{source}: a config is a YAML mapping with sections {', '.join(SECTIONS)}"
        )
    unknown = set(config) - set(SECTIONS)
    if unknown:
        raise CamtraceError(
            f"{source}: unknown section(s) {sorted(unknown)}; known: {', '.join(SECTIONS)}"
        )
    return config


def prepare_manifest(config: dict[str, Any], workdir: Path, progress: bool) -> Manifest:
    """The data section: simulate SimCam, index a real dataset, or read a manifest."""
    data = dict(config.get("data") or {"source": "simulate"})
    source = data.pop("source", "simulate")
    seed = int(config.get("seed", 0))
    if source == "simulate":
        from camtrace.data.simcam import simulate

        preset = data.get("preset", "default")
        shots = int(data.get("shots", 24))
        size = tuple(data.get("size", (384, 512)))
        out = workdir / f"simcam-{Path(str(preset)).stem}-{shots}x{size[0]}x{size[1]}-s{seed}"
        return simulate(
            preset,
            out,
            shots=shots,
            seed=seed,
            size=size,
            scenes_dir=data.get("scenes"),
            progress=progress,
        )
    if source == "index":
        from camtrace.data.layouts import index_dataset

        return index_dataset(
            data["root"],
            data["layout"],
            scenes_csv=data.get("scenes_csv"),
            multi_instance_only=bool(data.get("multi_instance_only", False)),
        )
    if source == "manifest":
        return Manifest.load(data["path"])
    raise CamtraceError(f"data.source '{source}' is not one of simulate, index, manifest")


def detector_specs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``detector`` section (one) or ``detectors`` list (a zoo), each with its patches
    (by default, and for a ``patches`` section without ``protocol``: the architecture's spec)."""
    specs = config.get("detectors") or [config.get("detector") or {"arch": "bondi2017"}]
    out = []
    for spec in specs:
        spec = {"arch": spec} if isinstance(spec, str) else dict(spec)
        arch = spec.setdefault("arch", "bondi2017").lower()
        patches = spec.get("patches") or config.get("patches") or {}
        patches = {"protocol": patches} if isinstance(patches, str) else dict(patches)
        spec["patches"] = {"protocol": model_spec(arch).protocol, **patches}
        out.append(spec)
    return out


def run_experiment(
    config: dict[str, Any], runs_dir: str | Path = "runs", progress: bool = True, log: Any = print
) -> dict[str, Any]:
    """Run an identification experiment (one detector or a zoo); returns its metrics.

    Writes ``runs/<name>/{metrics.json, report.html, config.yaml}`` and the checkpoints
    (``detector.safetensors`` for one detector, ``<arch>.safetensors`` for a zoo).
    """
    from camtrace.data.patches import get_protocol
    from camtrace.models.checkpoint import read_card
    from camtrace.training.detector import train_detector
    from camtrace.training.engine import TrainConfig, pick_device
    from camtrace.training.precision import environment

    config = copy.deepcopy(config)
    name = str(config.get("name", "experiment"))
    seed = int(config.setdefault("seed", 0))
    workdir = Path(config.get("workdir", "data"))
    run_dir = Path(runs_dir) / name
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(stage: str) -> None:
        timings[stage] = round(time.perf_counter() - t0 - sum(timings.values()), 2)
        log(f"{stage}: done in {timings[stage]:.1f} s")

    specs = detector_specs(config)
    attack_plan = parse_attacks(config.get("attacks"), specs)
    manifest = prepare_manifest(config, workdir, progress)
    lap("data")
    manifest = split_manifest(manifest, config.get("split"), seed)
    split_path = manifest.save(run_dir / "manifest.csv")
    lap("split")
    eval_spec = config.get("evaluate") or {}
    ks = tuple(eval_spec.get("voting_ks", (1, 2, 4, 8, 16, 32)))
    stores: dict[str, PatchStore] = {}
    detectors: dict[str, dict[str, Any]] = {}
    histories: dict[str, list[dict]] = {}
    for spec in specs:
        arch, p = spec["arch"], spec["patches"]
        protocol = get_protocol(p["protocol"], size=p.get("size"), count=p.get("count"))
        key = f"patches-{protocol.name}{protocol.size}-{protocol.count}-{manifest.digest()[:12]}"
        if key not in stores:
            stores[key] = build_patch_store(
                Manifest.load(split_path),
                workdir / key,
                protocol=protocol,
                seed=seed,
                progress=progress,
            )
            lap(f"patches {protocol.name} {protocol.size}px")
        store = stores[key]
        train_cfg = TrainConfig.from_dict(
            {"seed": seed, **(config.get("train") or {}), **(spec.get("train") or {})}
        )
        svm_spec = {**(config.get("svm") or {}), **(spec.get("svm") or {})}
        kwargs = {"Cs": tuple(svm_spec["Cs"])} if "Cs" in svm_spec else {}
        trained = train_detector(
            store,
            arch,
            run_dir / "train" / arch,
            train_cfg,
            svm=svm_spec.get("enabled"),
            progress=progress,
            **kwargs,
        )
        path = run_dir / ("detector.safetensors" if len(specs) == 1 else f"{arch}.safetensors")
        write_bytes_copy(trained.checkpoint, path)
        lap(f"train {arch}")
        result = evaluate_identifier(
            trained.detector, store, split=eval_spec.get("split", "eval"), ks=ks
        )
        lap(f"evaluate {arch}")
        histories[arch] = trained.result.history
        detectors[arch] = {
            "checkpoint": str(path),
            "classes": trained.detector.classes,
            "patch_size": store.patch_size,
            "patch_store": str(store.path),
            "patches": len(store),
            "best_epoch": trained.result.best_epoch,
            "svm": trained.svm,
            "train_patches_per_second": round(trained.result.patches_per_second, 1),
            "skipped_images": store.summary.get("skipped", []),
            "identification": result,
        }
    attacks = (
        run_attacks(attack_plan, detectors, manifest, seed, progress, log) if attack_plan else None
    )
    if attacks:
        lap("attacks")
    first = detectors[specs[0]["arch"]]
    metrics = {
        "command": f"camtrace run ({name})",
        "name": name,
        "seed": seed,
        "identification": first["identification"],
        "detectors": detectors,
        "data": {
            "manifest": str(split_path),
            "manifest_digest": manifest.digest(),
            "splits": split_summary(manifest),
        },
        "timings_s": timings,
        "environment": environment(
            pick_device(train_cfg.device),
            {a: read_card(d["checkpoint"])["training"]["precision"] for a, d in detectors.items()},
        ),
        **({"attacks": attacks.metrics} if attacks else {}),
    }
    report = build_report(config, metrics, histories)
    if attacks:
        attacks.add_to_report(report)
    write_run(run_dir, metrics, report, config)
    return metrics


def write_bytes_copy(src: Path, dst: Path) -> None:
    """Copy a checkpoint atomically (the run folder keeps its own copy)."""
    from camtrace.io import atomic_path

    with atomic_path(dst) as tmp:
        tmp.write_bytes(src.read_bytes())


def build_report(
    config: dict[str, Any], metrics: dict[str, Any], histories: dict[str, list[dict]]
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
    report.paragraph(yaml.safe_dump(config, sort_keys=False))
    return report


def save_config(config: dict[str, Any], path: Path) -> None:
    write_text(path, yaml.safe_dump(config, sort_keys=False))
