"""``camtrace pretrain NAME``: a zoo detector trained on SimCam-Bench by its built-in config
(``pretrain-NAME``, resumable: an interrupted training continues from its last epoch) and
published with its card: into the user's cache (:func:`camtrace.models.zoo.cache_dir`), or,
with ``ship=True`` (a maintainer's step), into the package and its registry.

The card's numbers are read from the run's ``metrics.json`` and ``history.json``, never
typed: single-patch and image accuracy on the bench's eval split, training seconds summed
over every sitting, the processor and precision that trained it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camtrace.data.bench import get_bench, recorded_digests
from camtrace.errors import CamtraceError
from camtrace.io import write_json, write_text
from camtrace.models.checkpoint import load_detector, save_detector
from camtrace.models.zoo import (
    MAX_SHIPPED_MB,
    Weights,
    registry_path,
    sha256_of,
    zoo,
)
from camtrace.workflows.config import parse_config
from camtrace.workflows.experiment import head_accuracy, load_config, run_experiment

CONFIG_PREFIX = "pretrain-"


def config_name(name: str) -> str:
    return f"{CONFIG_PREFIX}{name}"


def check_bench_config(config: dict[str, Any], source: str) -> None:
    """A pretrain config must train on the bench's data, split and seed: one line if not."""
    bench = get_bench()
    parsed = parse_config(config, source)
    wanted = parse_config({**config, **bench.config_sections()}, source)
    for section in ("seed", "data", "split"):
        if getattr(parsed, section) != getattr(wanted, section):
            raise CamtraceError(
                f"{source}: its {section} section is not {bench.name}'s; a pretrained "
                f"detector is trained on the bench's data only ({bench.config_sections()})"
            )


def pretrain(
    name: str,
    runs_dir: str | Path = "runs",
    ship: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Weights:
    """Train (or resume, or keep) the zoo detector ``name`` and publish it."""
    source = config_name(name)
    config = load_config(source)
    check_bench_config(config, source)
    run_experiment(config, runs_dir=runs_dir, progress=progress, log=log)
    return publish(Path(runs_dir) / config["name"], name, source, ship=ship)


def publish(run_dir: Path, name: str, config: str, ship: bool = False) -> Weights:
    """The run's first detector as the zoo entry ``name``: written with its card into the
    package (``ship``, when at most :data:`MAX_SHIPPED_MB`) or the cache."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    bench = get_bench()
    digest = metrics["data"]["manifest_digest"]
    if digest != recorded_digests(bench)["manifest"]:
        raise CamtraceError(
            f"{run_dir}: trained on data whose manifest digest {digest[:12]} is not "
            f"{bench.name}'s; retrain it with 'camtrace pretrain {name}'"
        )
    det_name, d = next(iter(metrics["detectors"].items()))
    detector = load_detector(run_dir / Path(d["checkpoint"]).name)  # the run's own copy
    history_file = run_dir / "train" / det_name / "history.json"
    history = json.loads(history_file.read_text()) if history_file.is_file() else []
    patch, image = head_accuracy(d["identification"])
    env = metrics["environment"]  # the processor of the run that trained it
    training = {
        "seconds": round(
            sum(h.get("seconds", 0.0) for h in history)
            or metrics["timings_s"].get(f"train {det_name}", 0.0)
        ),
        "processor": env["processor"],
        "isa": env["isa"],
        "precision": d["precision"],
        "epochs": len(history),
        "best_epoch": d["best_epoch"],
    }
    pretrained = {
        "name": name,
        "bench": bench.name,
        "data_digest": digest,
        "config": config,
        "accuracy": {
            "patch": patch,
            "image": image,
            "classifier": d["identification"]["primary"],
            "eval_images": d["identification"]["images"],
            "eval_patches": d["identification"]["patches"],
        },
        "training": training,
    }
    file = f"{name}.safetensors"
    staging = run_dir / file
    save_detector(detector, staging, pretrained=pretrained)
    size = staging.stat().st_size
    shipped = ship and size <= MAX_SHIPPED_MB * 2**20
    sha = sha256_of(staging)
    entry = Weights(
        name=name,
        arch=detector.arch,
        classes=tuple(detector.classes),
        patch_size=detector.patch_size,
        protocol=bench.protocol(detector.patch_size).name,
        bench=bench.name,
        data_digest=digest,
        config=config,
        accuracy=pretrained["accuracy"],
        training=training,
        defense=detector.card.get("defense", {}).get("kind", "none"),
        camtrace_version=detector.card["camtrace_version"],
        parameters=sum(p.numel() for p in detector.parameters()),
        file=file,
        bytes=size,
        sha256=sha,
        shipped=shipped,
    )
    dest = entry.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(staging.read_bytes())
    if not shipped:
        write_text(dest.with_suffix(".sha256"), f"{sha}  {file}\n")
    if ship:
        _register(entry)
        _keep_run(run_dir, det_name, config)
        _refresh_readme()
    return entry


ZOO_TABLE_START, ZOO_TABLE_END = "<!-- zoo table: camtrace models --markdown -->", "<!-- /zoo -->"


def zoo_markdown(entries: dict[str, Weights]) -> str:
    """The README's zoo table, rendered from the registry (never typed)."""
    lines = [
        "| name | architecture | patch | defence | single patch | image (vote) | size | "
        "training (processor, precision) | config |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for w in entries.values():
        t = w.training
        where = "" if w.shipped else ", in the cache"
        lines.append(
            f"| `{w.name}` | {w.arch} | {w.patch_size} px ({w.protocol}) | {w.defense} | "
            f"{100 * w.accuracy['patch']:.1f}% | {100 * w.accuracy['image']:.1f}% "
            f"({round(w.accuracy['image'] * w.accuracy['eval_images'])} / "
            f"{w.accuracy['eval_images']}) | {w.bytes / 2**20:.1f} MB{where} | "
            f"{t['seconds'] / 60:.0f} min, {_epochs(t['epochs'])} ({t['processor']}, "
            f"{t['isa']}, {t['precision']}) | `{w.config}` |"
        )
    return "\n".join(lines)


def with_zoo_table(readme: str, entries: dict[str, Weights]) -> str:
    """``readme`` with the text between the zoo-table markers replaced by the rendered table
    (``camtrace pretrain --ship`` keeps the README's table in step with the registry)."""
    head, found, rest = readme.partition(ZOO_TABLE_START)
    _, end, tail = rest.partition(ZOO_TABLE_END)
    if not (found and end):
        raise CamtraceError(f"README: no '{ZOO_TABLE_START}' ... '{ZOO_TABLE_END}' block")
    return f"{head}{ZOO_TABLE_START}\n{zoo_markdown(entries)}\n{ZOO_TABLE_END}{tail}"


def _epochs(n: int) -> str:
    return f"{n} epochs" if n else "fitted, no network"


def _source_checkout() -> Path | None:
    """The repository root when camtrace runs from a source checkout, else None."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() else None


def _keep_run(run_dir: Path, det_name: str, config: str) -> None:
    """In a source checkout, keep the run a shipped entry's numbers come from:
    ``results/<config>/`` gets its metrics.json, config.yaml and the training history."""
    root = _source_checkout()
    if root is None:
        return
    kept = root / "results" / config
    kept.mkdir(parents=True, exist_ok=True)
    for src in (
        run_dir / "metrics.json",
        run_dir / "config.yaml",
        run_dir / "train" / det_name / "history.json",
    ):
        if src.is_file():
            write_text(kept / src.name, src.read_text())


def _refresh_readme() -> None:
    """In a source checkout, re-render the README's zoo table from the registry."""
    root = _source_checkout()
    readme = root / "README.md" if root else None
    if readme is not None and readme.is_file() and ZOO_TABLE_START in readme.read_text():
        write_text(readme, with_zoo_table(readme.read_text(), zoo()))


def _register(entry: Weights) -> None:
    """Add or replace ``entry`` in the package's registry (atomically)."""
    path = registry_path()
    registry = json.loads(path.read_text())
    fields = {k: v for k, v in entry.__dict__.items() if k != "name"}
    registry["weights"][entry.name] = {**fields, "classes": list(entry.classes)}
    registry["weights"] = dict(sorted(registry["weights"].items()))
    write_json(path, registry)
