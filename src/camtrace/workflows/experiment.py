"""Experiments: one YAML config and a seed reproduce a run, and the run records what it ran.

A config names the data (simulated or indexed), the split protocol, the patch protocol,
the detector and its training, and what to evaluate. ``run_experiment`` identifies
(``identification.py``), then runs the sections the config names (``sections.py``: one
plug-in per key); it caches every stage under ``workdir`` (re-running skips what is done)
and writes ``runs/<name>/{metrics.json, report.html, config.yaml, detector.safetensors}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from camtrace.data.splits import split_summary
from camtrace.errors import CamtraceError
from camtrace.schema import load_yaml
from camtrace.training.engine import pick_device
from camtrace.training.precision import environment
from camtrace.workflows.attacks.section import AttacksSection
from camtrace.workflows.audit import AuditSection
from camtrace.workflows.config import ExperimentConfig, builtin_configs, on_bench, parse_config
from camtrace.workflows.defenses.report import add_defense_report
from camtrace.workflows.evaluate import add_identification_report
from camtrace.workflows.generators.run import plan_generators_of, train_generators
from camtrace.workflows.generators.section import GeneratorsSection
from camtrace.workflows.identification import (
    Clock,
    detector_specs,
    identify_on_split,
    prepare_manifest,
    splits_summary,
)
from camtrace.workflows.openset.section import OpenSetSection
from camtrace.workflows.prnu.section import PrnuSection
from camtrace.workflows.report import Report, percent, write_run
from camtrace.workflows.robustness.matrix import launched_rank, launched_world
from camtrace.workflows.robustness.section import RobustnessSection
from camtrace.workflows.sections import SECTIONS, Context, register_section
from camtrace.workflows.spoc.section import SpocSection
from camtrace.workflows.spoof_detection.section import SpoofDetectionSection
from camtrace.workflows.spoof_photos.section import SpoofSection

for _section in (  # the built-in sections, in the order they run within their stage
    AuditSection(),
    AttacksSection(),
    GeneratorsSection(),
    SpocSection(),
    SpoofSection(),
    PrnuSection(),
    OpenSetSection(),
    RobustnessSection(),
    SpoofDetectionSection(),
):
    register_section(_section)


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
    clock = Clock(log)
    ctx = Context(config, detector_specs(config), Path(runs_dir) / name, clock, progress, log)
    active = [s for s in SECTIONS.values() if getattr(config, s.key, None)]
    if launched_world() > 1 and not any(hasattr(s, "follow") for s in active):
        shared = [s.key for s in SECTIONS.values() if hasattr(s, "follow")]
        raise CamtraceError(
            f"{name}: torchrun shares the work of the {' or '.join(shared)} section only: add "
            "one, or run without torchrun"
        )
    for section in active:
        section.check(getattr(config, section.key), ctx)
    if launched_rank() > 0:  # torchrun's other ranks: their share of rank 0's work
        for section in active:
            if hasattr(section, "follow"):
                section.follow(getattr(config, section.key), ctx)
        return {}
    ctx.manifest = prepare_manifest(config, seed, progress)
    plans = {s.key: s.plan(getattr(config, s.key), ctx) for s in active}
    clock.lap("data")
    for section in (s for s in active if s.stage == "data"):
        ctx.results[section.key] = section.run(plans[section.key], ctx)
    runs = [
        identify_on_split(
            config,
            ctx.specs,
            ctx.manifest,
            seed + k,
            ctx.run_dir / f"split-{k}" if k else ctx.run_dir,
            clock,
            progress,
            f"split {k}: " if k else "",
        )
        for k in range(config.split.splits)
    ]
    ctx.split = first = runs[0]
    for section in (s for s in active if s.stage == "detectors"):
        ctx.results[section.key] = section.run(plans[section.key], ctx)
    detectors = first.detectors
    metrics = {
        "command": f"camtrace run ({name})",
        "name": name,
        "seed": seed,
        "identification": detectors[ctx.specs[0].name]["identification"],
        "detectors": detectors,
        "data": {
            "manifest": str(first.manifest_path),
            "manifest_digest": first.manifest.digest(),
            "splits": split_summary(first.manifest),
        },
        **({"splits": splits_summary(runs)} if len(runs) > 1 else {}),
        "timings_s": clock.timings,
        "environment": environment(
            pick_device(ctx.specs[0].train.device),
            {arch: d["precision"] for arch, d in detectors.items()},
        ),
        **{s.key: s.metrics(ctx.results[s.key]) for s in active},
    }
    report = build_report(given.to_dict(), metrics, first.histories)
    add_defense_report(report, metrics)
    for section in active:
        section.report(report, ctx.results[section.key], ctx)
    write_run(ctx.run_dir, metrics, report, given.to_dict())
    return metrics


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
    clock = Clock(log)
    split = identify_on_split(config, specs, manifest, config.seed, run_dir, clock, progress)
    paths = train_generators(plan, split.detectors, run_dir, progress, log)
    clock.lap("generators: train")
    return paths


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
