"""The ``camtrace`` command line: a thin layer that parses arguments and calls the API."""

from __future__ import annotations

import json
import re
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand

from camtrace.errors import CamtraceError
from camtrace.training.config import TrainConfig

app = typer.Typer(
    help="camtrace: identify the camera model of a photo, attack it, defend it, measure it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

Progress = Annotated[bool, typer.Option("--progress/--quiet", help="Show progress bars.")]
Detector = Annotated[
    str,
    typer.Option(
        help="A detector checkpoint (.safetensors) or a pretrained name (camtrace models)."
    ),
]


class Registered:
    """Parses an option whose values a registry or the config schema holds, read only when
    needed (a value to check, or ``--help``: see :class:`ListsChoices`), because importing
    the attacks or the models costs seconds on every start."""

    def __init__(self, option: str, names: Callable[[], Sequence[str]]) -> None:
        self.option, self.names = option, names
        self.__name__ = "choice"  # click names the parameter type after it

    def __call__(self, value: str) -> str:
        names = self.names()
        if value.lower() not in names:
            raise CamtraceError(f"--{self.option} {value}: use one of {', '.join(names)}")
        return value.lower()


class ListsChoices(TyperCommand):
    """A command whose ``--help`` shows, for each option parsed by :class:`Registered`, the
    values its registry holds."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        function = getattr(self.callback, "__wrapped__", self.callback)  # typer wraps it
        hints = typing.get_type_hints(function, include_extras=True)
        for param in self.params:
            infos = getattr(hints.get(param.name), "__metadata__", ())
            parse = next((getattr(i, "parser", None) for i in infos), None)
            if isinstance(parse, Registered) and "One of:" not in (param.help or ""):
                param.help = f"{param.help} One of: {', '.join(parse.names())}."
        super().format_help(ctx, formatter)


def _architectures() -> Sequence[str]:
    from camtrace.models import architectures

    return architectures()


def _attacks() -> Sequence[str]:
    from camtrace.attacks import ATTACKS

    return ATTACKS.names()


def _defence(key: str) -> Callable[[], Sequence[str]]:
    """The allowed values of DefenseConfig's ``key``, from its schema."""

    def names() -> Sequence[str]:
        from camtrace.defenses import DefenseConfig
        from camtrace.schema import choices_of

        return choices_of(DefenseConfig, key)

    return names


def _train(key: str) -> Any:
    """TrainConfig's default for ``key``: the CLI declares none of its own."""
    return TrainConfig.model_fields[key].default


def _layouts() -> Sequence[str]:
    from camtrace.data.layouts import LAYOUTS

    return LAYOUTS


def _protocols() -> Sequence[str]:
    from camtrace.data.patches import PROTOCOLS

    return tuple(PROTOCOLS)


def _precisions() -> Sequence[str]:
    from camtrace.schema import choices_of

    return choices_of(TrainConfig, "precision")


@app.command()
def quickstart(
    runs_dir: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
    workdir: Annotated[
        Path, typer.Option(help="Cache for simulated data and patch stores.")
    ] = Path("data"),
    preset: Annotated[
        str,
        typer.Option(
            help="SimCam preset: default, or hard (JPEG settings shared by every model); "
            "a preset other than default runs as quickstart-<preset>."
        ),
    ] = "default",
    progress: Progress = True,
) -> None:
    """Simulate SimCam, extract patches, train Bondi2017 + SVMs and Marra2017's SPAM SVMs
    (Bondi's baseline), identify held-out images, report."""
    from camtrace.workflows.experiment import load_config, run_experiment

    config = load_config("quickstart").replace(workdir=str(workdir))
    if preset != "default":
        data = config.data.replace(preset=preset)
        config = config.replace(data=data, name=f"quickstart-{Path(preset).stem}")
    _report_run(
        run_experiment(config, runs_dir=runs_dir, progress=progress, log=console.print), runs_dir
    )


@app.command()
def run(
    config: Annotated[str, typer.Argument(help="A YAML config file, or a built-in config name.")],
    runs_dir: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
    seed: Annotated[int | None, typer.Option(help="Override the config's seed.")] = None,
    progress: Progress = True,
) -> None:
    """Run an experiment from one config file; writes metrics.json, report.html, config.yaml.
    Under torchrun the processes share the cells of the robustness matrix."""
    from camtrace.workflows.experiment import load_config, run_experiment
    from camtrace.workflows.robustness.matrix import launched_rank

    cfg = load_config(config)
    if seed is not None:
        cfg = cfg.replace(seed=seed)
    lead = launched_rank() == 0  # under torchrun: rank 0 trains, prints and writes
    metrics = run_experiment(
        cfg, runs_dir=runs_dir, progress=progress and lead, log=console.print if lead else _quiet
    )
    if lead:
        _report_run(metrics, runs_dir)


def _quiet(*_: Any) -> None:
    """The log of the ranks other than 0."""


@app.command("train-attack")
def train_attack(
    config: Annotated[str, typer.Argument(help="A YAML config file, or a built-in config name.")],
    runs_dir: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
    seed: Annotated[int | None, typer.Option(help="Override the config's seed.")] = None,
    progress: Progress = True,
) -> None:
    """Train the generators of a config's generators: section (its detectors trained or
    loaded first); resumes a killed training, keeps finished ones."""
    from camtrace.workflows.experiment import load_config
    from camtrace.workflows.experiment import train_attack as train

    cfg = load_config(config)
    if seed is not None:
        cfg = cfg.replace(seed=seed)
    for target, path in train(cfg, runs_dir=runs_dir, progress=progress, log=console.print).items():
        console.print(f"{target}: {path}")


def _report_run(metrics: dict, runs_dir: Path) -> None:
    for arch, det in metrics["detectors"].items():
        ident = det["identification"]
        head = ident[ident["primary"]]
        console.print(
            f"[bold]{arch}[/]: single-patch accuracy {head['patch']['accuracy']:.2%}, "
            f"image accuracy {head['image']['accuracy']:.2%} "
            f"({ident['images']} evaluation images, {ident['patches']} patches)"
        )
    run_dir = Path(runs_dir) / metrics["name"]
    console.print(f"report:  {run_dir / 'report.html'}\nmetrics: {run_dir / 'metrics.json'}")


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Output folder (images/ and manifest.csv).")] = Path(
        "data/simcam"
    ),
    preset: Annotated[str, typer.Option(help="Preset name or YAML file.")] = "default",
    shots: Annotated[int, typer.Option(help="Scenes shot by every device.")] = 24,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 0,
    size: Annotated[tuple[int, int], typer.Option(help="Image height and width.")] = (384, 512),
    scenes: Annotated[
        Path | None, typer.Option(help="Folder of photos to use as scenes too.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Parallel processes.")] = 2,
    progress: Progress = True,
) -> None:
    """Shoot a simulated camera dataset (SimCam): real JPEGs with EXIF and a manifest."""
    from camtrace.data.simcam import simulate as _simulate

    manifest = _simulate(
        preset,
        out,
        shots=shots,
        seed=seed,
        size=size,
        scenes_dir=scenes,
        workers=workers,
        progress=progress,
    )
    devices = len({r.device for r in manifest})
    console.print(
        f"{len(manifest)} images from {len(manifest.models)} models / {devices} devices "
        f"-> {Path(out) / 'manifest.csv'}"
    )


@app.command()
def synthesize(
    real: Annotated[Path, typer.Argument(help="Split manifest of real photos (SimCam).")],
    out: Annotated[Path, typer.Option(help="Output folder (images/, manifest.csv).")] = Path(
        "data/synthetic"
    ),
    size: Annotated[int, typer.Option(help="Image side (4 times a power of two).")] = 64,
    iterations: Annotated[int, typer.Option(help="Training iterations per source.")] = 100,
    train_images: Annotated[int, typer.Option(help="Train images per source.")] = 200,
    val_images: Annotated[int, typer.Option(help="Val images per source.")] = 50,
    eval_images: Annotated[int, typer.Option(help="Eval images per source.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    progress: Progress = True,
) -> None:
    """Train the synthetic-image sources (SpoC's GAN images) and write their images; also
    OUT/detection/manifest.csv, real vs synthetic, for a GAN-image detector's patches."""
    from camtrace.data.manifest import Manifest
    from camtrace.data.synthetic import real_vs_synthetic
    from camtrace.training.gan_sources import SourceConfig, make_synthetic

    config = SourceConfig(
        size=size,
        iterations=iterations,
        train=train_images,
        val=val_images,
        eval=eval_images,
        seed=seed,
    )
    real_manifest = Manifest.load(real)
    made = make_synthetic(real_manifest, out, config=config, progress=progress)
    detection = real_vs_synthetic(real_manifest, made).save(out / "detection")
    console.print(f"{len(made)} images from {len(made.models)} sources -> {out / 'manifest.csv'}")
    console.print(f"real vs synthetic -> {detection}")


@app.command(cls=ListsChoices)
def index(
    root: Annotated[Path, typer.Argument(help="Root folder of the dataset.")],
    layout: Annotated[
        str, typer.Option(help="Dataset layout.", parser=Registered("layout", _layouts))
    ],
    out: Annotated[Path, typer.Option(help="Manifest file to write.")] = Path("manifest.csv"),
    scenes_csv: Annotated[Path | None, typer.Option(help="CSV with columns file,scene.")] = None,
    multi_instance_only: Annotated[
        bool, typer.Option(help="Keep models with >1 device (Bondi).")
    ] = False,
) -> None:
    """Index a real dataset (Dresden, VISION, Kaggle 2018, folders, EXIF) into a manifest."""
    from camtrace.data.layouts import index_dataset

    manifest = index_dataset(
        root, layout, scenes_csv=scenes_csv, multi_instance_only=multi_instance_only
    )
    manifest.root = root
    path = manifest.save(out)
    skipped = len(getattr(manifest, "skipped", ()))
    console.print(
        f"{len(manifest)} images, {len(manifest.models)} models, {skipped} skipped -> {path}"
    )


@app.command(cls=ListsChoices)
def audit(
    data: Annotated[Path, typer.Argument(help="Dataset folder, or a manifest.csv.")],
    out: Annotated[Path, typer.Option(help="Folder for audit.json and report.html.")] = Path(
        "runs/audit"
    ),
    layout: Annotated[
        str, typer.Option(help="Layout of a dataset folder.", parser=Registered("layout", _layouts))
    ] = "dresden",
    scenes_csv: Annotated[Path | None, typer.Option(help="CSV with columns file,scene.")] = None,
    progress: Progress = True,
) -> None:
    """Check a dataset for shortcuts (metadata, JPEG tables, colour) before trusting it."""
    from camtrace.workflows.audit import audit as run_audit
    from camtrace.workflows.audit import trace_sentence

    result = run_audit(data, out, layout=layout, scenes_csv=scenes_csv, progress=progress)
    for skip in result["skipped"]:
        err.print(f"skipped: {skip['reason']}", highlight=False, soft_wrap=True)
    console.print(
        f"{result['images']} images, {len(result['models'])} models, "
        f"{len(result['skipped'])} skipped; JPEG tables alone identify "
        f"{result['tables_identify']} of {len(result['models'])} models"
    )
    for flag in result["flags"] or ["no shortcut flagged"]:
        console.print(f"- {flag}", highlight=False, soft_wrap=True)
    console.print(trace_sentence(result), highlight=False, soft_wrap=True)
    console.print(f"report: {out / 'report.html'}")


@app.command(cls=ListsChoices)
def split(
    manifest: Annotated[Path, typer.Argument(help="Manifest to split.")],
    protocol: Annotated[
        str,
        typer.Option(
            help="bondi: scene- and device-disjoint; random: per-model image split.",
            parser=Registered("protocol", lambda: ("bondi", "random")),
        ),
    ] = "bondi",
    out: Annotated[Path | None, typer.Option(help="Output manifest (default: overwrite).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    eval_scene_frac: Annotated[
        float, typer.Option(help="bondi: fraction of scenes for evaluation.")
    ] = 0.15,
    val_scene_frac: Annotated[
        float, typer.Option(help="bondi: fraction of scenes for validation.")
    ] = 0.15,
    eval_instance: Annotated[
        str | None, typer.Option(help="bondi: instance held out for evaluation.")
    ] = None,
) -> None:
    """Assign train/val/eval splits and refuse any scene, image or device leak."""
    from camtrace.data.manifest import Manifest
    from camtrace.data.splits import split_manifest, split_summary

    spec: dict = {"protocol": protocol}
    if protocol == "bondi":
        spec.update(
            eval_scene_frac=eval_scene_frac,
            val_scene_frac=val_scene_frac,
            eval_instance=eval_instance,
        )
    result = split_manifest(Manifest.load(manifest), spec, seed)
    path = result.save(out or manifest)
    summary = split_summary(result)
    table = Table("split", "images", "scenes", "devices")
    for s, n in summary["images"].items():
        table.add_row(s, str(n), str(summary["scenes"][s]), str(summary["devices"][s]))
    console.print(table)
    console.print(f"no leaks -> {path}")


@app.command(cls=ListsChoices)
def patches(
    manifest: Annotated[Path, typer.Argument(help="Split manifest.")],
    out: Annotated[Path, typer.Option(help="Patch store folder.")] = Path("data/patches"),
    protocol: Annotated[
        str,
        typer.Option(
            help="bondi (64, top-32), guera (32, 500 random), gan (256).",
            parser=Registered("protocol", _protocols),
        ),
    ] = "bondi",
    size: Annotated[int | None, typer.Option(help="Override the patch size.")] = None,
    count: Annotated[int | None, typer.Option(help="Override patches per image.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workers: Annotated[int, typer.Option(help="Parallel processes.")] = 2,
    progress: Progress = True,
) -> None:
    """Cut patches into a memory-mapped uint8 patch store."""
    from camtrace.data.manifest import Manifest
    from camtrace.data.patch_store import build_patch_store
    from camtrace.data.patches import get_protocol

    store = build_patch_store(
        Manifest.load(manifest),
        out,
        get_protocol(protocol, size=size, count=count),
        seed=seed,
        workers=workers,
        progress=progress,
    )
    skipped = len(store.summary.get("skipped", []))
    console.print(
        f"{len(store)} patches of {store.patch_size}x{store.patch_size} from "
        f"{len(store.meta.images['model'])} images ({skipped} skipped) -> {store.path}"
    )


@app.command(cls=ListsChoices)
def train(
    store: Annotated[Path, typer.Argument(help="Patch store (from 'camtrace patches').")],
    arch: Annotated[
        str, typer.Option(help="Detector architecture.", parser=Registered("arch", _architectures))
    ] = "bondi2017",
    out: Annotated[Path, typer.Option(help="Training folder (state, best, detector).")] = Path(
        "runs/train"
    ),
    epochs: Annotated[int, typer.Option(help="Epochs (Bondi: best val loss within 50).")] = _train(
        "epochs"
    ),
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = _train("batch_size"),
    lr: Annotated[float, typer.Option(help="Initial learning rate.")] = _train("lr"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = _train("seed"),
    precision: Annotated[
        str,
        typer.Option(
            help="auto: bf16/fp16 where fast, else fp32.",
            parser=Registered("precision", _precisions),
        ),
    ] = _train("precision"),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = _train("device"),
    svm: Annotated[
        bool | None, typer.Option("--svm/--no-svm", help="Fit OvO SVMs (default: Bondi).")
    ] = None,
    features_from: Annotated[
        Path | None, typer.Option(help="Frozen CNN: fit SVMs only on new models.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last saved epoch.")] = True,
    init: Annotated[
        str | None,
        typer.Option(help="Fine-tune: start from a checkpoint or a pretrained name (bondi2017)."),
    ] = None,
    defense: Annotated[
        str, typer.Option(help="Zhao's defence.", parser=Registered("defense", _defence("kind")))
    ] = "none",
    lam: Annotated[
        float | None, typer.Option("--lambda", help="gradnorm: penalty weight (eq. 5).")
    ] = None,
    norm: Annotated[
        str | None,
        typer.Option(
            help="gradnorm: the gradient's norm.", parser=Registered("norm", _defence("norm"))
        ),
    ] = None,
    adv_attack: Annotated[
        str | None,
        typer.Option(
            help="advtrain: the attack crafting the adversarial patches.",
            parser=Registered("adv-attack", _defence("attack")),
        ),
    ] = None,
    k: Annotated[int | None, typer.Option(help="advtrain: adversarial patches per batch.")] = None,
    alpha: Annotated[float | None, typer.Option(help="advtrain: their loss weight.")] = None,
    eps_min: Annotated[float | None, typer.Option(help="advtrain: smallest eps, 0-255.")] = None,
    eps_max: Annotated[float | None, typer.Option(help="advtrain: largest eps, 0-255.")] = None,
    progress: Progress = True,
) -> None:
    """Train a detector on a patch store (resumable); writes OUT/detector.safetensors.

    With --defense, training uses Zhao's gradient-norm penalty, mixed adversarial training or
    both (defaults: Zhao's k 32, alpha 0.2, eps U[1, 5], FGSM); the card records it."""
    from camtrace.data.patch_store import PatchStore
    from camtrace.defenses import DefenseConfig, make_objective
    from camtrace.schema import parse
    from camtrace.training.detector import refit_svm_for_new_models, train_detector
    from camtrace.training.distributed import init_from_env
    from camtrace.training.engine import TrainConfig

    given = {
        "lam": lam,
        "norm": norm,
        "attack": adv_attack,
        "k": k,
        "alpha": alpha,
        "eps_min": eps_min,
        "eps_max": eps_max,
    }
    options = {"kind": defense, **{key: v for key, v in given.items() if v is not None}}
    objective = make_objective(parse(DefenseConfig, options, "defense"))
    init_from_env()  # under torchrun: DistributedDataParallel, one process per GPU
    patch_store = PatchStore.open(store)
    if features_from is not None:
        from camtrace.models import load_detector

        path = refit_svm_for_new_models(
            load_detector(features_from), patch_store, out / "detector.safetensors", seed=seed
        )
        console.print(f"SVMs fitted on frozen features of {features_from} -> {path}")
        return
    config = parse(
        TrainConfig,
        {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "precision": precision,
            "device": device,
            "init": init,
        },
        "train",
    )
    trained = train_detector(
        patch_store,
        arch,
        out,
        config,
        svm=svm,
        resume=resume,
        progress=progress,
        objective=objective,
    )
    fitted = (
        f"hand-crafted features, SVMs fitted (C = {trained.svm['C']})"
        if trained.detector.spec.handcrafted and trained.svm
        else f"best epoch {trained.result.best_epoch} (val loss {trained.result.best_val_loss:.4f})"
    )
    console.print(
        f"{fitted}, {trained.result.patches_per_second:.0f} patches/s -> {trained.checkpoint}"
    )


def _answer(model: str, nearest: str) -> str:
    """An open-set answer as printed: the model, or "unknown model" with the vote's winner."""
    return model if model == nearest else f"unknown model (nearest {nearest})"


@app.command()
def identify(
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    detector: Detector,
    k: Annotated[int | None, typer.Option(help="Voting patches (default: the detector's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    map_out: Annotated[
        Path | None, typer.Option("--map", help="Write the per-block attribution map PNG.")
    ] = None,
    closed_set: Annotated[
        bool,
        typer.Option("--closed-set", help="Always name one of the known models (open set off)."),
    ] = False,
) -> None:
    """Which camera model shot each image: majority vote over patches, with per-model shares.

    Open set is on by default: evidence unlike every model the detector
    knows is answered "unknown model", by the detector's calibrated score
    and threshold (camtrace calibrate; the zoo ships its own); without a
    calibration it says so and answers closed-set. Images that cannot carry
    colour camera traces (greyscale, 16-bit, heavily resized, screenshot-
    sized PNG) get a warning instead of a confident model."""
    from camtrace.data.images import load_photo
    from camtrace.models import load_detector
    from camtrace.models.inference import identify as _identify
    from camtrace.models.openset import detector_openset

    det = load_detector(detector)
    openset, notice = None if closed_set else detector_openset(det), None
    if isinstance(openset, str):
        openset, notice = None, openset
    if openset is not None and k is not None and k != openset.patches:
        notice = (
            f"open set calibrated at {openset.patches} voting patches, not --k {k}: "
            "answering closed-set"
        )
        openset = None
    results = []
    for path in images:
        photo = load_photo(path, min_size=det.patch_size)
        results.append(_identify(det, photo, k=k, openset=openset))
        if map_out is not None:
            target = (
                map_out
                if len(images) == 1
                else map_out.with_name(f"{map_out.stem}_{path.stem}.png")
            )
            _write_map(det, photo.rgb, target, path.name)
    if notice:  # after the images were read: a bad image stays a one-line error
        err.print(notice, highlight=False, soft_wrap=True)
    if as_json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return
    from rich.table import Column

    table = Table(
        Column("image", overflow="fold", ratio=2),  # a camera's file name fits at 80 columns
        Column("camera model", overflow="fold", ratio=1),
        "votes",
        Column("runner-up", overflow="fold", ratio=1),
        expand=True,
    )
    for r in results:
        ranked = sorted(r.scores.items(), key=lambda kv: -kv[1])
        second = f"{ranked[1][0]} {ranked[1][1]:.0%}" if len(ranked) > 1 else ""
        model = _answer(r.model, r.nearest)
        table.add_row(
            Path(r.path).name,
            model + (" (warning)" if r.warnings else ""),
            f"{r.vote_share:.0%}",
            second,
        )
    console.print(table)
    if openset is not None:
        threshold = openset.thresholds[openset.score]
        console.print(
            f"open set: unknown model below {threshold:.4g} of the {openset.score} score (a "
            f"{openset.frr:.0%} false rejection of known models); --json: each image's score",
            highlight=False,
        )
    for r in results:
        for warning in r.warnings:
            console.print(
                f"[yellow]warning:[/] {Path(r.path).name}: {warning}; the answer is not "
                "evidence of its camera model",
                highlight=False,
                soft_wrap=True,
            )


@app.command(cls=ListsChoices)
def calibrate(
    checkpoint: Annotated[
        str, typer.Argument(help="A detector checkpoint (.safetensors) or a pretrained name.")
    ],
    store: Annotated[
        Path,
        typer.Option(help="Patch store of the detector's models with train and val splits."),
    ],
    frr: Annotated[
        float, typer.Option(help="False-rejection rate of known models, on the val split.")
    ] = 0.05,
    cloud_images: Annotated[
        int, typer.Option(help="Training images per model in the Mahalanobis cloud.")
    ] = 40,
    score: Annotated[
        str,
        typer.Option(
            help="The score identify decides with.",
            parser=Registered("score", _openset_scores),
        ),
    ] = "mahalanobis",
    progress: Progress = True,
) -> None:
    """Calibrate a detector for open-set identification (camtrace identify).

    Every score's threshold at FRR on the store's val split, the Mahalanobis
    cloud from its train split; writes CHECKPOINT.openset.safetensors beside
    the checkpoint, where identify finds it."""
    from camtrace.data.patch_store import PatchStore
    from camtrace.models.calibration import calibrate_openset
    from camtrace.models.openset import save_openset, sidecar_path
    from camtrace.models.zoo import resolve_checkpoint

    if not 0 <= frr < 1:
        raise CamtraceError(f"--frr {frr}: a rate in [0, 1), e.g. 0.05")
    if cloud_images < 2:
        raise CamtraceError(f"--cloud-images {cloud_images}: at least 2 images per model")
    path = resolve_checkpoint(checkpoint)
    openset = calibrate_openset(path, PatchStore.open(store), frr, cloud_images, progress=progress)
    saved = save_openset(openset.with_score(score), sidecar_path(path))
    table = Table("score", "threshold")
    for name, threshold in openset.thresholds.items():
        table.add_row(name + (" (decides)" if name == score else ""), f"{threshold:.4g}")
    console.print(table)
    n = openset.data["thresholds"]["images"]
    console.print(f"thresholds at FRR {frr:.0%} on {n} val images -> {saved}")


def _openset_scores() -> Sequence[str]:
    from camtrace.models.openset import SCORES

    return SCORES


def _write_map(det, rgb, target: Path, title: str) -> None:
    from camtrace.models.inference import block_map
    from camtrace.workflows.examine import block_scores
    from camtrace.workflows.plots import attribution_map_figure, save_figure

    labels, positions, conf = block_map(det, rgb)
    fig = attribution_map_figure(
        rgb,
        labels,
        positions,
        det.patch_size,
        det.classes,
        block_scores(det, conf),  # an SVM's votes on 0-1, or the tint is barely visible
        title=f"{title}: camera model per {det.patch_size}x{det.patch_size} block",
    )
    save_figure(fig, target)
    err.print(f"attribution map -> {target}")


@app.command()
def evaluate(
    detector: Annotated[
        list[str],
        typer.Option(help="Detector checkpoint(s) or pretrained name(s); repeat to compare."),
    ],
    store: Annotated[Path, typer.Option(help="Patch store with an evaluation split.")],
    split_name: Annotated[str, typer.Option("--split", help="Split to evaluate on.")] = "eval",
    name: Annotated[str, typer.Option(help="Run name: writes runs/NAME/.")] = "evaluate",
    runs_dir: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
) -> None:
    """Patch and image accuracy, confusion matrices, voting curve -> metrics.json + report.html."""
    from camtrace.data.patch_store import PatchStore
    from camtrace.workflows.evaluate import evaluate_detectors

    path, rows = evaluate_detectors(
        detector, PatchStore.open(store), Path(runs_dir) / name, split=split_name
    )
    table = Table(*rows[0].keys())
    for row in rows:
        table.add_row(*map(str, row.values()))
    console.print(table)
    console.print(f"report:  {path / 'report.html'}\nmetrics: {path / 'metrics.json'}")


@app.command(cls=ListsChoices)
def attack(
    image: Annotated[Path, typer.Argument(help="Image to spoof.")],
    detector: Detector,
    out: Annotated[Path, typer.Option(help="Output image: .png (lossless) or .jpg.")],
    method: Annotated[
        str,
        typer.Option(
            help="The attack (a generative one with --generator).",
            parser=Registered("method", _attacks),
        ),
    ] = "pgd",
    generator: Annotated[
        str | None,
        typer.Option(
            help="Generative attacks: a generator checkpoint (train_generator; spoc: "
            "train_spoc) or a trained generator's name (camtrace models)."
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(help="Camera model to spoof (default: untargeted; a generator's own target)."),
    ] = None,
    eps: Annotated[
        float | None,
        typer.Option(help="Budget: 0-255 pixel units (>= 1), or < 1 on the [0, 1] scale."),
    ] = None,
    alpha: Annotated[float | None, typer.Option(help="Step size, same units as --eps.")] = None,
    steps: Annotated[int | None, typer.Option(help="Iterations (iterative attacks).")] = None,
    jpeg_quality: Annotated[
        int | None, typer.Option(help="Write a JPEG of this quality (with a .jpg --out).")
    ] = None,
    jpeg_like: Annotated[
        Path | None,
        typer.Option(
            help="Write a JPEG with this photo's quantisation tables (e.g. the target camera's)."
        ),
    ] = None,
    through_jpeg: Annotated[
        bool,
        typer.Option(
            help="Gradient attacks: take the gradient through a differentiable copy of the "
            "output JPEG too, so the perturbation survives it."
        ),
    ] = False,
    rounds: Annotated[
        int, typer.Option(help="Re-identify and re-attack failing patches up to this many rounds.")
    ] = 3,
    seed: Annotated[
        int, typer.Option(help="Seed of the random starts (PGD): same seed, same output.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    progress: Progress = True,
) -> None:
    """Spoof a whole image: attack every patch the detector votes with (a generator: every
    patch), stitch, write a real file, identify it."""
    from camtrace.attacks import Jpeg, as_pixel_eps
    from camtrace.models import load_detector
    from camtrace.schema import parse
    from camtrace.workflows.config import AttackSettings
    from camtrace.workflows.spoof import spoof

    if jpeg_quality is not None and jpeg_like is not None:
        raise CamtraceError("give --jpeg-quality or --jpeg-like, not both")
    if alpha is not None:
        alpha, said = as_pixel_eps(alpha)
        err.print(f"alpha: {said}")
    given = {"alpha": alpha, "steps": steps}
    settings = parse(
        AttackSettings,
        {
            "method": method,
            "eps": eps,
            "params": {k: v for k, v in given.items() if v is not None},
            "generator": generator,
            "target": target,
            "through_jpeg": through_jpeg,
            "rounds": rounds,
            "seed": seed,
        },
        "attack",
    )
    if eps is not None:
        err.print(f"eps: {settings.pixels()[1]}")
    jpeg = Jpeg.from_file(jpeg_like) if jpeg_like is not None else jpeg_quality
    det = load_detector(detector)
    result = spoof(det, image, out, settings, jpeg=jpeg, progress=progress)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    goal = f"target {result.target}" if result.target else f"leave {result.before.model}"
    console.print(
        f"{image}: {result.before.model} ({result.before.vote_share:.0%} of votes) -> {out} "
        f"read back: "
        f"{result.after.model} ({result.after.vote_share:.0%}); {goal}: "
        f"{'[green]reached[/]' if result.success else '[red]NOT reached[/]'}"
    )
    console.print(
        f"{method}: {result.attacked} patches attacked in {result.rounds} round(s), "
        f"PSNR {result.psnr:.1f} dB, Linf {result.linf}"
    )
    if result.open_set is not None:
        console.print(
            "open set (camtrace identify's default; the verdict above is the vote): "
            f"{_answer(result.open_set, result.after.model)}",
            highlight=False,
        )
    if not result.success:
        raise typer.Exit(1)


@app.command("detect-spoof")
def detect_spoof(
    image: Annotated[Path, typer.Argument(help="The photo to examine.")],
    fingerprints: Annotated[
        Path | None,
        typer.Option(help="PRNU fingerprints (camtrace prnu enroll): a folder, or one file."),
    ] = None,
    detector: Annotated[
        str, typer.Option(help="The camera-model detector whose reading is checked.")
    ] = "bondi2017",
    spoof_detector: Annotated[
        str,
        typer.Option(help="The learned spoof detector: a checkpoint or a name (camtrace models)."),
    ] = "spoofnet",
    reference: Annotated[
        Path | None,
        typer.Option(
            help="An original JPEG of the camera model the photo is read as: its quantisation "
            "tables stand for the model's (camtrace knows SimCam's models' only)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Was a photo processed by a counter-forensic attack? The learned spoof detector's
    verdict on the patches a detector votes with, and the consistency checks (EXIF Make/Model
    and JPEG tables against the camera model the traces are read as, the sensor's PRNU
    against enrolled devices), each explained in a sentence."""
    from camtrace.workflows.spoof_check import detect_spoof as _detect

    found = _detect(
        image,
        detector=detector,
        spoof_detector=spoof_detector,
        fingerprints=fingerprints,
        reference=reference,
    )
    if as_json:
        print(json.dumps(found.to_dict(), indent=2))
        return
    learned = found.learned
    console.print(
        f"{image.name}: read as {found.model} ({found.vote_share:.0%} of the votes by "
        f"{detector}); learned verdict: {'attacked' if learned.attacked else 'clean'}",
        highlight=False,
    )
    from rich.table import Column

    table = Table(
        Column("check", max_width=20, overflow="fold"),
        "result",
        Column("why", overflow="fold", ratio=1),
        expand=True,
    )
    table.add_row(
        f"learned ({learned.detector})", "warn" if learned.attacked else "pass", learned.sentence
    )
    for check in found.checks:
        table.add_row(check.name, check.status, check.sentence)
    console.print(table)


@app.command()
def models(
    classes: Annotated[int, typer.Option(help="Camera models the classifiers are sized for.")] = 10,
    markdown: Annotated[
        bool, typer.Option(help="Print the pretrained detectors as the README's Markdown table.")
    ] = False,
) -> None:
    """The detector zoo: paper, native patch, protocol, SVMs, parameters, GFLOPs per patch;
    then the pretrained detectors with their SimCam-Bench accuracy."""
    from rich import box
    from rich.table import Column

    from camtrace.models.summary import summarize_all

    if markdown:
        from camtrace.models.zoo import zoo
        from camtrace.workflows.tables import zoo_markdown

        print(zoo_markdown(zoo()))
        return

    table = Table(
        *(Column(h, no_wrap=True) for h in ("name", "paper", "patch", "SVMs", "bf16")),
        Column("params", no_wrap=True, justify="right"),
        Column("GFLOPs", no_wrap=True, justify="right"),
        title=f"Detectors ({classes} classes): native patch (smallest), GFLOPs a patch",
        box=box.SIMPLE_HEAD,  # fits an 80-column terminal
        pad_edge=False,
    )
    for row in summarize_all(classes):
        s = row.spec
        table.add_row(
            s.name,
            _short_paper(s.paper),
            f"{s.patch_size} ({s.min_patch_size})",
            "yes" if s.svm else "no",
            "yes" if s.mixed_precision else "no",
            f"{row.parameters:,}",
            f"{row.gflops_per_patch:.3f}",
        )
    console.print(table)
    _pretrained_table()


def _short_paper(paper: str) -> str:
    """ "Bondi et al., ICIP 2017" -> "Bondi 2017" (the first author and the year)."""
    years = re.findall(r"\b(?:19|20)\d\d\b", paper)
    return f"{paper.split()[0].rstrip(',')} {years[0] if years else ''}".strip()


def _pretrained_table() -> None:
    from rich.table import Column

    from camtrace.models.zoo import generator_zoo, spoof_detector_zoo, zoo

    table = Table(
        Column("name", no_wrap=True),
        "patch",
        "defence",
        "single patch",
        "image",
        "MB",
        Column("where", no_wrap=True),
        title="Pretrained on SimCam-Bench (eval split): --detector NAME; camtrace info NAME",
    )
    for w in zoo().values():
        table.add_row(
            w.name,
            str(w.patch_size),
            w.defense,
            f"{w.accuracy['patch']:.1%}",
            f"{w.accuracy['image']:.1%}",
            f"{w.bytes / 2**20:.1f}",
            "shipped" if w.shipped else "cache",
        )
    console.print(table)
    _spoof_detector_table(spoof_detector_zoo())
    generators = generator_zoo()
    if not generators:
        return
    table = Table(
        Column("generator", no_wrap=True),
        "against",
        "patch",
        "SAR",
        "PSNR",
        "SSIM",
        title="Trained generators (validation, uint8): --method METHOD --generator NAME",
    )
    for g in generators.values():
        v = g.validation
        table.add_row(
            g.name,
            ", ".join(g.against),
            str(g.patch_size),
            f"{min(v['sar']):.1%}",
            f"{v['psnr']:.1f} dB",
            f"{v.get('ssim', float('nan')):.3f}",
        )
    console.print(table)


def _spoof_detector_table(entries: dict) -> None:
    from rich.table import Column

    if not entries:
        return
    table = Table(
        Column("spoof detector", no_wrap=True),
        "trained on",
        "false positives",
        "MB",
        Column("where", no_wrap=True),
        title="Spoof detectors (bench eval patches): camtrace detect-spoof --spoof-detector NAME",
    )
    for w in entries.values():
        table.add_row(
            w.name,
            f"{', '.join(dict.fromkeys(a.split()[0] for a in w.trained_on))} against "
            f"{', '.join(w.against)}",
            ", ".join(f"{k} {v:.1%}" for k, v in w.false_positives.items()),
            f"{w.bytes / 2**20:.1f}",
            "shipped" if w.shipped else "cache",
        )
    console.print(table)


@app.command()
def pretrain(
    name: Annotated[str, typer.Argument(help="Pretrained detector (camtrace models).")],
    runs_dir: Annotated[Path, typer.Option(help="Where run folders go.")] = Path("runs"),
    ship: Annotated[
        bool,
        typer.Option(help="Maintainers: write the weights and their entry into the package."),
    ] = False,
    remeasure: Annotated[
        bool,
        typer.Option(
            help="Maintainers: measure the shipped generators again (nothing trains); "
            "their registry entries get the new run's numbers."
        ),
    ] = False,
    progress: Progress = True,
) -> None:
    """Train a zoo detector (or a generative attack's generators) on SimCam-Bench with its
    built-in config pretrain-NAME (resumes an interrupted training) and publish it to the
    cache (or, --ship, the package); the accuracy is in camtrace models."""
    from camtrace.workflows.pretrain import pretrain as _pretrain
    from camtrace.workflows.pretrain import remeasure_generators

    if remeasure:
        for g in remeasure_generators(name, runs_dir, progress=progress, log=console.print):
            console.print(f"{g.name}: re-measured ({g.path} unchanged)")
        return
    for w in _pretrain(name, runs_dir, ship=ship, progress=progress, log=console.print):
        console.print(f"{w.name} -> {w.path}")


@app.command()
def gallery(
    docs: Annotated[Path, typer.Argument(help="Documentation folder.")] = Path("docs"),
) -> None:
    """Every trained generator of the zoo on a SimCam-Bench photo, original and spoof side
    by side: DOCS/generators/<name>.png and DOCS/generators.md."""
    from camtrace.workflows.generators.gallery import write_gallery

    console.print(f"gallery -> {write_gallery(docs)}")


@app.command()
def tables(
    files: Annotated[list[Path], typer.Argument(help="Markdown files with table blocks.")],
    root: Annotated[Path, typer.Option(help="Where the blocks' run folders are.")] = Path("."),
) -> None:
    """Re-render every result table block (<!-- table: KIND SOURCE -->) of Markdown files
    from the kept runs they name (results/<run>/metrics.json) and the zoo's registry."""
    from camtrace.io import write_text
    from camtrace.workflows.tables import refresh_tables

    for path in files:
        text = path.read_text()
        fresh = refresh_tables(text, root)
        if fresh != text:
            write_text(path, fresh)
        console.print(f"{path}: {'re-rendered' if fresh != text else 'up to date'}")


@app.command()
def keep(
    run: Annotated[Path, typer.Argument(help="A finished run folder (runs/<name>).")],
    name: Annotated[
        str | None, typer.Option("--as", help="Its name under results/ (default: the run's).")
    ] = None,
    results: Annotated[Path, typer.Option(help="Where kept runs go.")] = Path("results"),
) -> None:
    """Keep a run whose numbers a document shows: its metrics.json and config.yaml into
    results/<name>/, where table blocks (<!-- table: KIND results/<name> -->) read them."""
    from camtrace.workflows.tables import keep_run

    console.print(f"kept: {keep_run(run, results, name or run.name)}")


@app.command()
def schema(
    out: Annotated[
        Path | None, typer.Option(help="Write it to this file (default: print it).")
    ] = None,
    preset: Annotated[
        bool, typer.Option("--preset", help="The schema of a SimCam preset file instead.")
    ] = False,
) -> None:
    """The JSON Schema of camtrace config files (or of SimCam presets), for editors to
    complete and check them (YAML language server: # yaml-language-server: $schema=<file>)."""
    import json

    from camtrace.io import write_json
    from camtrace.workflows.config import config_schema, preset_schema

    schema = preset_schema() if preset else config_schema()
    if out is None:
        console.print_json(json.dumps(schema))
    else:
        write_json(out, schema)
        console.print(f"{out}: written")


@app.command()
def bench(
    workdir: Annotated[Path, typer.Option(help="Cache of simulated data and patch stores.")] = Path(
        "data"
    ),
    record: Annotated[
        bool, typer.Option(help="Maintainers: freeze the bench, recording its digests.")
    ] = False,
    progress: Progress = True,
) -> None:
    """Regenerate SimCam-Bench (cached under --workdir) and check its manifest, image and
    patch digests against the recorded ones."""
    from camtrace.data.bench import freeze_bench, prepare_bench, verify_bench

    data = prepare_bench(workdir, progress=progress)
    if record:
        console.print(f"{data.bench.name}: frozen -> {freeze_bench(data)}")
        return
    digests = verify_bench(data)
    console.print(
        f"{data.bench.name}: {len(data.manifest)} images, manifest {digests['manifest'][:12]}, "
        + ", ".join(f"{k} px patches {len(data.stores[int(k)])}" for k in digests["patches"])
        + ": [green]matches the recorded digests[/]"
    )


@app.command()
def info(
    checkpoint: Annotated[
        str, typer.Argument(help="Detector or generator checkpoint, or a pretrained name.")
    ],
) -> None:
    """Print a checkpoint's card: a detector's (architecture, classes, preprocessing,
    training, data) or a generator's (method, target, the detectors it was trained against,
    data, settings, last validation)."""
    from camtrace.models import read_card

    print(json.dumps(read_card(checkpoint), indent=2))


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port of the page.")] = 8000,
    host: Annotated[
        str, typer.Option(help="Interface: 127.0.0.1 keeps the page on this machine.")
    ] = "127.0.0.1",
    detectors: Annotated[
        Path | None,
        typer.Option(
            help="A folder of checkpoints offered beside the shipped zoo (generators, and PRNU "
            "fingerprints for the PRNU check, too)."
        ),
    ] = None,
) -> None:
    """The analyst's web page: drop photos, see which camera shot them and where, check and
    spoof them, batches of a folder or a zip (needs the web extra: camtrace[web])."""
    try:
        from camtrace.web import exposed
        from camtrace.web import serve as run_page
    except ImportError as e:
        raise CamtraceError(
            f"camtrace serve needs the web extra ({e.name} is missing): pip install 'camtrace[web]'"
        ) from None
    if exposed(host):
        err.print(
            f"[yellow]warning:[/] --host {host} opens the page to other machines; anyone who "
            "reaches it can upload photos and run attacks (no login)",
            highlight=False,
            soft_wrap=True,
        )
    console.print(f"camtrace page: http://{host}:{port} (Ctrl+C stops it; uploads are removed)")
    run_page(host, port, detectors)


prnu = typer.Typer(
    help="PRNU device fingerprints (Lukas 2006; Chen 2008): enrol a device from its photos, "
    "match a photo against the enrolled devices by PCE (Goljan 2009).",
    no_args_is_help=True,
)
app.add_typer(prnu, name="prnu")


@prnu.command("enroll")
def prnu_enroll(
    folder: Annotated[
        Path, typer.Argument(help="Folder of the device's photos (one size; at least 10).")
    ],
    device: Annotated[str, typer.Option(help="The device's name, recorded in the fingerprint.")],
    out: Annotated[Path, typer.Option(help="The fingerprint file to write (.safetensors).")],
    workers: Annotated[int, typer.Option(help="Processes computing the residuals.")] = 2,
    progress: Progress = True,
) -> None:
    """Estimate a device's PRNU fingerprint from its photos (maximum likelihood, saturated
    pixels left out) and write it with its card (camtrace info FP prints it)."""
    from camtrace.workflows.prnu.files import prnu_enroll as enroll

    fp = enroll(folder, device, out, workers=workers, progress=progress)
    h, w = fp.size
    console.print(
        f"{fp.device}: fingerprint of {fp.card['images']} photos of {w}x{h} -> {fp.path}",
        soft_wrap=True,
    )


@prnu.command("match")
def prnu_match(
    image: Annotated[Path, typer.Argument(help="The photo to test.")],
    fingerprints: Annotated[
        Path, typer.Option(help="A folder of fingerprints (camtrace prnu enroll), or one file.")
    ],
    threshold: Annotated[
        float, typer.Option(help="PCE at or above which the photo is the device's.")
    ] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Which enrolled device took a photo: its PCE against every fingerprint, highest first;
    a device matches at PCE >= threshold."""
    from camtrace.workflows.prnu.files import prnu_match as match

    result = match(image, fingerprints, threshold=threshold)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    table = Table("device", "PCE", "peak correlation", "match")
    for m in result.matches:
        table.add_row(m.device, f"{m.pce:.1f}", f"{m.rho:.4f}", "yes" if m.matched else "no")
    console.print(table)
    for note in result.notes:
        err.print(f"note: {note}", highlight=False, soft_wrap=True)
    best = result.matches[0]
    verdict = (
        f"taken by {result.device} (PCE {best.pce:.1f} >= {threshold:g})"
        if result.device
        else f"no enrolled device (highest PCE {best.pce:.1f}, {best.device}, < {threshold:g})"
    )
    console.print(f"{image.name}: {verdict}")


def main() -> None:
    """Entry point: user errors are one line on stderr, never a traceback."""
    try:
        app()
    except CamtraceError as e:
        err.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted; completed outputs are kept, partial ones were not written")
        sys.exit(130)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        err.print(
            f"[red]error:[/] {e.filename or ''}: {e.strerror}", highlight=False, soft_wrap=True
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
