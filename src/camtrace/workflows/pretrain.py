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
from dataclasses import replace
from pathlib import Path
from typing import Any

from camtrace.attacks.generative.checkpoint import (
    load_generator,
    read_generator_card,
    save_generator,
)
from camtrace.attacks.generative.training import GENERATOR_FILE
from camtrace.data.bench import get_bench, recorded_digests
from camtrace.errors import CamtraceError
from camtrace.io import write_json, write_text
from camtrace.models.checkpoint import load_detector, save_detector
from camtrace.models.zoo import (
    MAX_SHIPPED_MB,
    GeneratorWeights,
    Pretrained,
    SpoofDetectorWeights,
    Weights,
    generator_zoo,
    registry_path,
    sha256_of,
)
from camtrace.workflows.config import ExperimentConfig, on_bench
from camtrace.workflows.experiment import load_config, run_experiment
from camtrace.workflows.generators.run import read_log
from camtrace.workflows.identification import head_accuracy
from camtrace.workflows.spoc.plan import spoc_folder
from camtrace.workflows.spoof_check import SPOOF_CONFIG, SPOOF_DETECTOR
from camtrace.workflows.spoof_detection.run import FOLDER as SPOOF_FOLDER
from camtrace.workflows.tables import keep_run, refresh_tables

CONFIG_PREFIX = "pretrain-"


def config_name(name: str) -> str:
    """The built-in config that trains zoo entry ``name``: ``pretrain-NAME``, and
    ``spoof-detection`` for the spoof detector."""
    return SPOOF_CONFIG if name == SPOOF_DETECTOR else f"{CONFIG_PREFIX}{name}"


def check_bench_config(config: ExperimentConfig, source: str) -> None:
    """A pretrain config must train on the bench's data, split and seed: one line if not."""
    bench = get_bench()
    wanted = on_bench(config.replace(data={"source": "bench"}, split={}, seed=bench.seed))
    resolved = on_bench(config)
    for section in ("seed", "data", "split"):
        if getattr(resolved, section) != getattr(wanted, section):
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
) -> list[Pretrained]:
    """Train (or resume, or keep) the zoo entry ``name`` with its config ``pretrain-NAME``
    and publish it: a detector, or the generators of the config's ``generators:`` section
    (one ``<method>-<target>`` entry per target) or of its ``spoc:`` section (``spoc-<target>``)."""
    source = config_name(name)
    config = load_config(source)
    check_bench_config(config, source)
    metrics = run_experiment(config, runs_dir=runs_dir, progress=progress, log=log)
    run_dir = Path(runs_dir) / config.name
    if "spoof_detection" in metrics:  # its config trains a generator too, as an attack
        return [publish_spoof_detector(run_dir, name, source, ship=ship)]
    if "generators" in metrics or "spoc" in metrics:
        return list(publish_generators(run_dir, source, ship=ship))
    return [publish(run_dir, name, source, ship=ship)]


def remeasure_generators(
    name: str,
    runs_dir: str | Path = "runs",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[GeneratorWeights]:
    """Measure the zoo's generators of ``pretrain-NAME`` again as shipped, when the
    evaluation has gained a measurement (the whole photos' open-set verdicts): the config's
    ``generators:`` section run with ``pretrained: true``, so nothing trains; each entry's
    ``measured`` becomes the new run's, its weights untouched (the file's own card keeps the
    measurement it shipped with); the run is kept as ``results/pretrain-NAME/``."""
    source = config_name(name)
    config = load_config(source)
    check_bench_config(config, source)
    g = config.generators
    if g is None:
        raise CamtraceError(f"{source}: no generators section; nothing to re-measure")
    zoo = generator_zoo()
    runs = {d.label(): d.pretrained for d in config.detectors}
    against = tuple(runs.get(d) for d in g.detectors)
    for target in g.targets:
        entry = zoo.get(f"{g.method}-{target}")
        if entry is None or tuple(entry.against) != against:
            raise CamtraceError(
                f"{source}: the zoo has no {g.method}-{target} trained against "
                f"{', '.join(map(str, against))}; train it first (camtrace pretrain {name})"
            )
    config = config.replace(generators=g.replace(pretrained=True))
    run_experiment(config, runs_dir=runs_dir, progress=progress, log=log)
    run_dir = Path(runs_dir) / config.name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    out = []
    for unit_name, _, _, measured in _units(run_dir, metrics):
        entry = zoo[unit_name]
        checkpoint = Path(metrics["generators"]["targets"][entry.target]["checkpoint"])
        if sha256_of(checkpoint) != entry.sha256:  # the run measured the shipped file
            raise CamtraceError(f"{checkpoint}: not the zoo's {unit_name}; nothing registered")
        remeasured = replace(entry, validation={**entry.validation, "measured": measured})
        _register(remeasured, "generators")
        out.append(remeasured)
    _keep_run(run_dir, None, source)
    _refresh_readme()
    return out


def _file_fields(staging: Path, ship: bool) -> dict[str, Any]:
    """A zoo entry's file fields: name, bytes, sha256, and whether it goes into the package
    (asked to ``ship`` and at most :data:`MAX_SHIPPED_MB`: the repository carries every
    retraining forever)."""
    size = staging.stat().st_size
    return {
        "file": staging.name,
        "bytes": size,
        "sha256": sha256_of(staging),
        "shipped": ship and size <= MAX_SHIPPED_MB * 2**20,
    }


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
    staging = run_dir / f"{name}.safetensors"
    save_detector(detector, staging, pretrained=pretrained)
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
        **_file_fields(staging, ship),
    )
    _install(staging, entry)
    if ship:
        _register(entry, "weights")
        _keep_run(run_dir, det_name, config)
        _refresh_readme()
    return entry


def publish_generators(run_dir: Path, config: str, ship: bool = False) -> list[GeneratorWeights]:
    """Every generator of a run's ``generators:`` section as the zoo entry
    ``<method>-<target>`` (its Chen-table measurement: seen and unseen SAR, PSNR, SSIM, and
    whole photos where measured), or
    SpoC's generators of its ``spoc:`` section as ``spoc-<target>`` (SpoC's Table 4 row on
    synthetic inputs: PSNR and each judge's SAR, as written and after the target camera's
    JPEG), read from the run's metrics.json, with the last validation; into the package
    (``ship``) or the cache. The detectors a generator was trained against or judged by must
    be pretrained ones, so a user's detector of the same name is the one it fools."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    units = _spoc_units(run_dir, metrics) if "spoc" in metrics else _units(run_dir, metrics)
    out = [_publish_generator(*unit, config, ship) for unit in units]
    if ship:
        _keep_run(
            run_dir, None, config, {e.name: u[1].parent for e, u in zip(out, units, strict=True)}
        )
    return out


Unit = tuple[str, Path, tuple[str, ...], dict[str, Any]]  # name, file, against, measured


def _units(run_dir: Path, metrics: dict[str, Any]) -> list[Unit]:
    """The ``generators:`` section's generators, trained against its pretrained detectors."""
    section = metrics["generators"]
    against = tuple(_pretrained_names(run_dir, metrics, section["detectors"], "generator"))
    units = []
    for target, row in section["targets"].items():
        name = f"{section['method']}-{target}"
        measured = {g: row[g] for g in ("seen", "unseen") if g in row}
        if "photos" in row:  # whole photos: the summary, not each photo's verdict
            measured["photos"] = {k: v for k, v in row["photos"].items() if k != "photos"}
        units.append((name, run_dir / "generators" / name / GENERATOR_FILE, against, measured))
    return units


def _spoc_units(run_dir: Path, metrics: dict[str, Any]) -> list[Unit]:
    """SpoC's generators on synthetic S (SpoC's setting): trained against no detector,
    measured by the section's pretrained judges."""
    s = metrics["spoc"]
    judges = _pretrained_names(run_dir, metrics, s["classifiers"], "SpoC measurement")
    by_zoo_name = dict(zip(s["classifiers"], judges, strict=True))
    rows = [r for r in s["table4"].get("synthetic", []) if r["method"] == "spoc"]
    if not rows:
        raise CamtraceError(f"{run_dir}: its spoc section has no SpoC row on synthetic inputs")
    units = []
    for target, cell in zip(s["targets"], rows[0]["per_target"], strict=True):
        measured = {
            "synthetic": {
                "psnr": cell["psnr"],
                **{
                    group: {by_zoo_name[a]: rate for a, rate in cell[group].items()}
                    for group in ("plain", "camera_jpeg")
                },
            }
        }
        trained = spoc_folder(run_dir, "synthetic", "spoc", "none", target) / GENERATOR_FILE
        units.append((f"spoc-{target}", trained, (), measured))
    return units


def _publish_generator(
    name: str,
    trained: Path,
    against: tuple[str, ...],
    measured: dict[str, Any],
    config: str,
    ship: bool,
) -> GeneratorWeights:
    """One trained generator as the zoo entry ``name``, its card extended by ``measured``;
    stored in float16 when float32 would be over :data:`MAX_SHIPPED_MB` (GAP's ResNet)."""
    card, generator = read_generator_card(trained), load_generator(trained)
    staging = trained.parent.parent / f"{name}.safetensors"
    card = {**card, "pretrained": {"name": name, "measured": measured}}
    fp32_bytes = sum(4 * t.numel() for t in generator.state_dict().values())
    storage = "float16" if ship and fp32_bytes > MAX_SHIPPED_MB * 2**20 else "float32"
    save_generator(generator, staging, card, storage)
    entry = GeneratorWeights(
        name=name,
        **_file_fields(staging, ship),
        method=card["method"],
        target=card["target"],
        against=against,
        classes=tuple(card.get("classes", ())),  # SpoC names none: it never saw a detector
        patch_size=card["patch_size"],
        bench=get_bench().name,
        config=config,
        validation={**card["validation"], "measured": measured},
        training={
            "seconds": card.get("training_seconds"),
            "cpu_seconds": card.get("training_cpu_seconds"),
            "iterations": card["iterations"],
            "processor": card["environment"]["processor"],
            "isa": card["environment"]["isa"],
        },
        camtrace_version=card["camtrace_version"],
        storage=storage,
    )
    _install(staging, entry)
    if ship:
        _register(entry, "generators")
    return entry


def publish_spoof_detector(
    run_dir: Path, name: str, config: str, ship: bool = False
) -> SpoofDetectorWeights:
    """The run's spoof detector (the first candidate of its ``spoof_detection:`` section) as
    the zoo entry ``name``, with the rates it measured on the bench's eval patches (read from
    the run's metrics.json); into the package (``ship``) or the cache. The detectors its
    positives were crafted against must be pretrained ones."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    bench = get_bench()
    if metrics["data"]["manifest_digest"] != recorded_digests(bench)["manifest"]:
        raise CamtraceError(
            f"{run_dir}: not trained on {bench.name}'s data; retrain it with "
            f"'camtrace pretrain {name}'"
        )
    section = metrics["spoof_detection"]
    against = _pretrained_names(run_dir, metrics, section["against"], "spoof detector")
    first = section["detector"]
    detector = load_detector(run_dir / SPOOF_FOLDER / f"{first}.safetensors")
    env = metrics["environment"]
    training = {
        **section["candidates"][first]["training"],
        "processor": env["processor"],
        "isa": env["isa"],
        "precision": detector.card["training"]["precision"],
    }
    rates = {
        "false_positives": {k: v["flagged"][first] for k, v in section["negatives"].items()},
        "detection": {k: v["detected"][first] for k, v in section["attacks"].items()},
    }
    staging = run_dir / f"{name}.safetensors"
    save_detector(
        detector, staging, pretrained={"name": name, "bench": bench.name, "config": config, **rates}
    )
    entry = SpoofDetectorWeights(
        name=name,
        **_file_fields(staging, ship),
        arch=detector.arch,
        classes=tuple(detector.classes),
        patch_size=detector.patch_size,
        bench=bench.name,
        config=config,
        trained_on=tuple(section["train"]["attacks"]),
        against=tuple(against),
        training=training,
        camtrace_version=detector.card["camtrace_version"],
        parameters=sum(p.numel() for p in detector.parameters()),
        **rates,
    )
    _install(staging, entry)
    if ship:
        _register(entry, "spoof_detectors")
        _keep_run(run_dir, None, config)
    return entry


def _pretrained_names(
    run_dir: Path, metrics: dict[str, Any], detectors: list[str], what: str
) -> list[str]:
    """The zoo names of the run's ``detectors`` a shipped ``what`` was made against; one line
    if one of them was trained in the run instead."""
    names = []
    for det in detectors:
        zoo_name = metrics["detectors"][det].get("pretrained")
        if zoo_name is None:
            raise CamtraceError(
                f"{run_dir}: {det} was trained in the run, not a pretrained detector; a shipped "
                f"{what} is made against the shipped detectors"
            )
        names.append(zoo_name)
    return names


def _install(staging: Path, entry: Pretrained) -> None:
    """Copy a staged weights file to the entry's place (package or cache, with its sidecar)."""
    dest = entry.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(staging.read_bytes())
    if not entry.shipped:
        write_text(dest.with_suffix(".sha256"), f"{entry.sha256}  {entry.file}\n")


def _source_checkout() -> Path | None:
    """The repository root when camtrace runs from a source checkout, else None."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() else None


def _keep_run(
    run_dir: Path, det_name: str | None, config: str, generators: dict[str, Path] | None = None
) -> None:
    """In a source checkout, keep the run a shipped entry's numbers come from:
    ``results/<config>/`` gets its metrics.json, config.yaml and the training history (a
    detector's history.json; each generator's validation curve, ``<name>.validation.json``,
    from the ``generators`` folders by zoo name)."""
    root = _source_checkout()
    if root is None:
        return
    history = (run_dir / "train" / det_name / "history.json",) if det_name else ()
    kept = keep_run(run_dir, root / "results", config, history)
    for name, folder in (generators or {}).items():
        curve = read_log(folder)["validation"]
        write_json(kept / f"{name}.validation.json", curve)


def _refresh_readme() -> None:
    """In a source checkout, re-render the README's tables (the zoo's from the registry)."""
    root = _source_checkout()
    readme = root / "README.md" if root else None
    if readme is not None and readme.is_file():
        write_text(readme, refresh_tables(readme.read_text(), root))


def _register(entry: Pretrained, section: str) -> None:
    """Add or replace ``entry`` in the package's registry (atomically)."""
    path = registry_path()
    registry = json.loads(path.read_text())
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in entry.__dict__.items()}
    fields.pop("name")
    entries = {**registry.get(section, {}), entry.name: fields}
    registry[section] = dict(sorted(entries.items()))
    write_json(path, registry)
