"""The experiment config, typed: one YAML mapping parsed into the dataclasses below.

Every section is a frozen dataclass whose fields carry their meaning and allowed values, so
one set of definitions parses a config (:func:`parse_config`), names a bad key or value in
one line by its key path (``attacks.runs[2].eps``), and writes the README's config
reference (:func:`config_reference`). The ``train`` section is
:class:`camtrace.training.engine.TrainConfig` itself; ``train`` and ``svm`` may be given
again under a detector of ``detectors:``, where they override the top-level ones key by key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar, Literal, NoReturn

from camtrace.data.bench import get_bench
from camtrace.defenses import DefenseConfig
from camtrace.errors import CamtraceError
from camtrace.training.engine import TrainConfig

REQUIRED: Any = dataclasses.MISSING


def option(
    default: Any,
    doc: str,
    *,
    choices: Callable[[], Sequence[Any]] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    when: tuple[str, tuple[str, ...]] | None = None,
    partial_of: type | None = None,
) -> Any:
    """A config field: its default, its meaning, and what values it accepts.

    ``choices`` lists allowed values (a callable: registries fill at import time);
    ``minimum``/``maximum`` bound numbers (items of a list included); ``when`` limits the key
    to some values of a sibling key (``("source", ("simulate",))``); ``partial_of`` makes the
    field a mapping of some keys of another section (a detector's own ``train:``).
    """
    meta = {
        "doc": doc,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "when": when,
        "partial_of": partial_of,
    }
    if default == {}:  # the only mutable default: an empty mapping
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


def _fail(path: str, message: str) -> NoReturn:
    raise CamtraceError(f"{path}: {message}" if path else message)


# -- sections ------------------------------------------------------------------------------------


def _layouts() -> Sequence[str]:
    from camtrace.data.layouts import LAYOUTS

    return LAYOUTS


def _protocols() -> Sequence[str]:
    from camtrace.data.patches import PROTOCOLS

    return tuple(PROTOCOLS)


def _architectures() -> Sequence[str]:
    from camtrace.models import architectures

    return architectures()


def builtin_configs() -> list[str]:
    """Names of the configs shipped with camtrace (``camtrace run NAME``)."""
    return sorted(
        p.name[:-5]
        for p in resources.files("camtrace.configs").iterdir()
        if p.name.endswith(".yaml")
    )


def _pretrained() -> Sequence[str]:
    """The zoo's detectors, and those a built-in pretrain-NAME config trains."""
    from camtrace.models.zoo import zoo

    configs = [c.removeprefix("pretrain-") for c in builtin_configs() if c.startswith("pretrain-")]
    return tuple(sorted({*zoo(), *configs}))


def _attacks() -> Sequence[str]:
    from camtrace.attacks import ATTACKS

    return tuple(ATTACKS)


def _generative() -> Sequence[str]:
    """The methods the generators: section trains against its detectors (SpoC trains on
    target-camera images alone: camtrace.attacks.generative.train_spoc)."""
    from camtrace.attacks.generative import METHODS

    return tuple(name for name, method in METHODS.items() if method.detector)


def _losses() -> Sequence[str]:
    from camtrace.attacks.base import LOSSES

    return tuple(LOSSES)


def _matrix_attacks() -> Sequence[str]:
    from camtrace.attacks import ATTACKS
    from camtrace.attacks.generative import METHODS

    return tuple(a for a in ATTACKS if a not in METHODS)


SIMULATE = ("source", ("simulate",))
INDEX = ("source", ("index",))
BONDI = ("protocol", ("bondi",))
SPLITS = ("train", "val", "eval")


@dataclass(frozen=True)
class DataConfig:
    """Where the photos come from."""

    source: Literal["simulate", "index", "manifest", "bench"] = option(
        "simulate",
        "simulate SimCam, index a real dataset folder, read a manifest CSV, or SimCam-Bench "
        "(its data and split, fixed: the pretrained zoo's)",
    )
    bench: int = option(1, "SimCam-Bench version", minimum=1, when=("source", ("bench",)))
    preset: str = option("default", "SimCam preset name or YAML path", when=SIMULATE)
    shots: int = option(24, "scenes each SimCam device shoots", minimum=1, when=SIMULATE)
    size: tuple[int, int] = option(
        (384, 512), "SimCam image size (height, width)", minimum=16, when=SIMULATE
    )
    scenes: str | None = option(None, "folder of scene images (default: procedural)", when=SIMULATE)
    root: str | None = option(None, "dataset folder (required)", when=INDEX)
    layout: str | None = option(None, "dataset layout (required)", choices=_layouts, when=INDEX)
    scenes_csv: str | None = option(None, "CSV of image -> scene id", when=INDEX)
    multi_instance_only: bool = option(False, "keep only models with several devices", when=INDEX)
    path: str | None = option(None, "manifest CSV (required)", when=("source", ("manifest",)))

    def check(self, path: str) -> None:
        required = {"index": ("root", "layout"), "manifest": ("path",)}.get(self.source, ())
        for key in required:
            if getattr(self, key) is None:
                _fail(f"{path}.{key}", f"required with source {self.source}")


@dataclass(frozen=True)
class SplitConfig:
    """Train/val/eval split (``camtrace.data.splits``), repeated over ``splits`` seeds."""

    protocol: Literal["bondi", "random", "given"] = option(
        "bondi",
        "bondi: scene- and device-disjoint (Bondi Sec. III-A); random: per-model image split "
        "(Güera, Zhao); given: the manifest's own split column",
    )
    eval_scene_frac: float = option(
        0.15, "fraction of scenes for evaluation", minimum=0, maximum=1, when=BONDI
    )
    val_scene_frac: float = option(
        0.15, "fraction of scenes for validation", minimum=0, maximum=1, when=BONDI
    )
    eval_instance: str | None = option(
        None, "device instance held out for evaluation (default: one at random)", when=BONDI
    )
    strict: bool = option(False, "refuse single-instance models instead of a warning", when=BONDI)
    fractions: tuple[float, float, float] = option(
        (0.7, 0.15, 0.15), "train, val, eval fractions", minimum=0, when=("protocol", ("random",))
    )
    splits: int = option(
        1,
        "random splits (seeds seed .. seed+N-1) whose mean and spread are reported (Bondi: 10)",
        minimum=1,
    )

    def protocol_options(self) -> dict[str, Any]:
        """The split's keyword arguments for :func:`camtrace.data.splits.split_manifest`."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata["when"] and self.protocol in f.metadata["when"][1]
        } | {"protocol": self.protocol}


@dataclass(frozen=True)
class PatchesConfig:
    """How patches are cut (``camtrace.data.patches``); a plain name stands for its protocol."""

    SHORTHAND: ClassVar[str] = "protocol"

    protocol: str | None = option(
        None,
        "bondi (64 px, top 32 by quality), guera (32 px, 500 random), gan (256 px, all); "
        "default: the detector's own",
        choices=_protocols,
    )
    size: int | None = option(None, "patch size in pixels (default: the protocol's)", minimum=1)
    count: int | None = option(None, "patches per image (default: the protocol's)", minimum=1)


def _train(doc: str, minimum: float | None = None, choices: Any = None) -> dict[str, Any]:
    return {"doc": doc, "choices": choices, "minimum": minimum, "maximum": None}


TRAIN_KEYS: dict[str, dict[str, Any]] = {
    "epochs": _train("training epochs", 1),
    "batch_size": _train("patches per step", 1),
    "lr": _train("learning rate", 0),
    "momentum": _train("SGD momentum", 0),
    "weight_decay": _train("L2 weight decay", 0),
    "lr_step_epochs": _train("epochs between learning-rate steps", 1),
    "lr_gamma": _train("factor of each learning-rate step", 0),
    "optimizer": _train("sgd (the papers') or adam", choices=lambda: ("sgd", "adam")),
    "precision": _train("auto: bf16/fp16 where fast, else fp32", choices=lambda: _precisions()),
    "channels_last": _train("channels-last memory format"),
    "device": _train("auto, cpu, cuda or cuda:N"),
    "eval_batch_size": _train("patches per validation step", 1),
    "init": _train("fine-tune: start from a checkpoint or pretrained name (default: random)"),
}
"""The ``train`` keys: every :class:`TrainConfig` field but ``seed`` (the experiment's)."""


def _precisions() -> Sequence[str]:
    from camtrace.training.precision import PRECISIONS

    return PRECISIONS


@dataclass(frozen=True)
class SvmConfig:
    """Bondi's battery of one-vs-one SVMs on the CNN features (Bondi Sec. II-B)."""

    enabled: bool | None = option(None, "fit the SVMs (default: for bondi2017 only)")
    Cs: tuple[float, ...] | None = option(
        None, "values of C tried, chosen on validation patch accuracy", minimum=0
    )


@dataclass(frozen=True)
class DetectorConfig:
    """One detector; a plain name (``- mislnet``) stands for ``{arch: mislnet}``."""

    SHORTHAND: ClassVar[str] = "arch"

    arch: str = option("bondi2017", "architecture", choices=_architectures)
    pretrained: str | None = option(
        None,
        "a pretrained detector of the zoo (camtrace models), used as shipped: not trained, "
        "its arch and patches its own",
        choices=_pretrained,
    )
    name: str | None = option(
        None,
        "its name in the run (default: arch, or arch-kind when defended, or the pretrained "
        "name); must be unique",
    )
    patches: PatchesConfig | None = option(None, "its patches (default: the top-level ones)")
    train: dict[str, Any] = option(
        {}, "keys of train: overriding the top-level ones", partial_of=TrainConfig
    )
    svm: dict[str, Any] = option(
        {}, "keys of svm: overriding the top-level ones", partial_of=SvmConfig
    )
    defense: DefenseConfig | None = option(
        None, "training-time defence of Zhao (a kind, or a mapping; default: none)"
    )

    def check(self, path: str) -> None:
        if self.pretrained is None:
            return
        for key in ("patches", "train", "svm", "defense"):
            if getattr(self, key):
                _fail(f"{path}.{key}", "a pretrained detector is used as shipped: drop this key")

    def label(self) -> str:
        """The detector's name in the run: ``name``, else the pretrained name, else arch
        (+ ``-kind`` when defended)."""
        if self.name:
            return self.name
        if self.pretrained:
            return self.pretrained
        kind = self.defense.kind if self.defense else "none"
        return self.arch.lower() if kind == "none" else f"{self.arch.lower()}-{kind}"


@dataclass(frozen=True)
class EvaluateConfig:
    """Identification on held-out patches and images (Bondi Sec. III)."""

    split: Literal["train", "val", "eval"] = option("eval", "split evaluated")
    voting_ks: tuple[int, ...] = option(
        (1, 2, 4, 8, 16, 32), "patches per image in the majority-vote curve", minimum=1
    )


@dataclass(frozen=True)
class AttackRunConfig:
    """One attack of ``attacks.runs`` (or ``attacks.transfer``), swept over eps and targets."""

    method: str = option(REQUIRED, "attack name (required)", choices=_attacks)
    eps: tuple[float, ...] = option((), "epsilons, one setting each (a number or a list)")
    units: Literal["auto", "pixel", "unit"] = option(
        "auto", "eps units: auto (< 1 is the [0, 1] scale), pixel (0-255) or unit (x 255)"
    )
    targets: Literal["all"] | tuple[str, ...] | None = option(
        None, "null: untargeted; all: one setting per camera model; or a list of models"
    )
    params: dict[str, Any] = option(
        {},
        "the attack's keyword arguments, 0-255 units; jpeg: a quality or camera (the target "
        "camera's own tables)",
    )
    patches: int | None = option(None, "cap on the patches of this run", minimum=1)
    detectors: tuple[str, ...] | None = option(None, "detectors attacked (default: all)")


@dataclass(frozen=True)
class AttacksConfig:
    """Attacks on the trained detectors (Güera Tables 3-4, Zhao Table 2, SpoC Table 4)."""

    split: Literal["train", "val", "eval"] = option("eval", "split of the patch store attacked")
    patches: int = option(500, "patches picked per detector (seeded)", minimum=1)
    select: Literal["correct", "all"] = option(
        "correct", "correct: correctly classified patches only (Güera); all: any (Zhao)"
    )
    jpeg: tuple[int | Literal["camera"] | None, ...] = option(
        (None,),
        "judge outputs as is (null) and after JPEG: a quality, or camera (the target camera's "
        "own tables)",
        minimum=1,
        maximum=100,
    )
    batch_size: int = option(128, "patches per attack batch", minimum=1)
    examples: int = option(4, "patches per run in the examples figure (Güera Fig. 4)", minimum=0)
    runs: tuple[AttackRunConfig, ...] = option((), "white-box attacks, each on every detector")
    transfer: AttackRunConfig | tuple[AttackRunConfig, ...] | None = option(
        None,
        "attack(s) crafted on each detector and judged by every one (SpoC Table 4); "
        "metrics.json keeps the shape given (one mapping or a list)",
    )


@dataclass(frozen=True)
class SpoofConfig:
    """Whole photos of the evaluation split spoofed toward another camera model (Chen Sec.
    3.4: patch by patch, stitched), written as real files and identified again."""

    detector: str | None = option(None, "the run's detector attacked (default: the first)")
    method: str = option("pgd", "a gradient attack", choices=_attacks)
    eps: float = option(4.0, "budget, 0-255 pixel units", minimum=0)
    params: dict[str, Any] = option({}, "the attack's other keyword arguments, 0-255 units")
    photos: int = option(1, "photos spoofed: the first eval photo of the first models", minimum=1)
    target: str | None = option(
        None, "camera model to spoof (default: the next in class order after the photo's reading)"
    )


@dataclass(frozen=True)
class UnseenConfig:
    """Camera models no part of training used (Chen Sec. 4.3), simulated with the data
    section's scenes, size and seed."""

    preset: str = option("unseen", "SimCam preset of the unseen models, name or YAML path")
    shots: int = option(4, "scenes each unseen device shoots", minimum=1)


@dataclass(frozen=True)
class GeneratorsConfig:
    """Generative attacks (Chen 2019 Tables 3-4): one generator per target, trained against
    trained detectors of this config, evaluated on seen and unseen camera models."""

    method: str = option(REQUIRED, "generative attack (required)", choices=_generative)
    detectors: tuple[str, ...] | None = option(
        None, "detectors it trains against (default: the first); several: an ensemble (GAP)"
    )
    targets: Literal["all"] | tuple[str, ...] = option(
        "all", "camera models to spoof, one generator each; all: every model"
    )
    patch_size: int | None = option(
        None, "generator patch side, a multiple of 4 (default: the detector's patches)", minimum=4
    )
    train_patches: int = option(
        2000, "training patches (seeded pick of the train split)", minimum=1
    )
    val_patches: int = option(64, "validation patches (the val split)", minimum=1)
    eval_patches: int = option(
        200, "source patches evaluated per target, seen and unseen", minimum=1
    )
    iterations: int = option(1000, "training iterations at most", minimum=1)
    batch_size: int = option(30, "patches per iteration (Chen: 30; D sees 2x)", minimum=1)
    lr: float | None = option(None, "Adam learning rate (default: the method's)", minimum=0)
    alpha: float = option(1.0, "weight of the L1 term in grey levels (Chen Eq. 2)", minimum=0)
    alpha_sweep: tuple[float, ...] = option(
        (),
        "instead of alpha: one generator per target and value, compared on their learning "
        "curves (Chen does not say on what scale Eq. 3's L1 is taken: 1 is grey levels, "
        "1/255 the [0, 1] scale)",
        minimum=0,
    )
    beta: float = option(1.0, "weight of the classification term", minimum=0)
    gamma: float = option(1.0, "weight of the adversarial term (mislgan only)", minimum=0)
    eps: float | None = option(
        None, "Linf budget, 0-255 (default 8)", minimum=0, when=("method", ("gap",))
    )
    stop_sar: float = option(
        0.95, "stop once every detector's validation SAR reaches it", minimum=0, maximum=1
    )
    stop_psnr: float | None = option(
        None, "... and the validation PSNR this (default: 40 dB; none for gap)", minimum=0
    )
    max_hours: float | None = option(
        None, "stop after this much training time, summed over sittings (default: none)", minimum=0
    )
    val_every: int = option(50, "iterations between validations", minimum=1)
    save_every: int = option(50, "iterations between saved training states", minimum=1)
    unseen: UnseenConfig | None = option(
        None, "camera models no part of training used, e.g. {preset: unseen, shots: 4}"
    )
    examples: int = option(4, "patches per target in the examples figure", minimum=0)


@dataclass(frozen=True)
class SpocSyntheticConfig:
    """SpoC's set S (Sec. 5.1): the synthetic-image sources trained on the real training
    photos (:func:`camtrace.training.gan_sources.make_synthetic`), cached by digest."""

    size: int = option(128, "image side of the sources (4 x a power of two; SpoC: 256)", minimum=16)
    iterations: int = option(100, "training iterations per source", minimum=1)
    train: int = option(200, "train images per training source (SpoC: 20,000)", minimum=1)
    val: int = option(50, "val images per training source", minimum=1)
    eval: int = option(
        100, "eval images per source, held-out one included (SpoC: 2,000)", minimum=1
    )


@dataclass(frozen=True)
class SpocEmbedderConfig:
    """SpoC's embedder, pre-trained once on the camera models of a SimCam preset none of the
    detectors knows (SpoC: 600 models), cached by digest and reused across runs."""

    path: str | None = option(
        None, "a pre-trained embedder.safetensors (default: pre-train on preset, cached)"
    )
    preset: str = option("many", "SimCam preset of the embedder's camera models")
    shots: int = option(2, "scenes each of its devices shoots", minimum=1)
    count: int = option(16, "patches per image", minimum=1)
    iterations: int = option(1000, "triplet-loss iterations", minimum=1)
    models_per_batch: int = option(20, "camera models per batch (20 x 4 = SpoC's 80)", minimum=2)
    patches_per_model: int = option(4, "patches per model in a batch", minimum=1)


@dataclass(frozen=True)
class SpocTrainingConfig:
    """SpoC's generator training (Sec. 5; loss weights of Eq. 1), one per target camera."""

    iterations: int = option(500, "iterations (SpoC: 50,000)", minimum=1)
    batch_size: int = option(10, "images of S per iteration (SpoC: 10; D sees 3x)", minimum=1)
    lambda_e: float = option(1.0, "weight of the embedder terms", minimum=0)
    lambda_a: float = option(0.1, "weight of the adversarial term", minimum=0)
    lambda_p: float = option(0.001, "weight of the perceptual term", minimum=0)
    lambda_f: float = option(0.01, "weight of feature matching in the embedder term", minimum=0)
    vgg_weights: str | None = option(None, "VGG-19 safetensors for L_PER (default: random)")
    val_every: int = option(50, "iterations between validations (and saved states)", minimum=1)
    max_hours: float | None = option(
        None, "stop after this much training time, summed over sittings (default: none)", minimum=0
    )


@dataclass(frozen=True)
class SpocSectionConfig:
    """SpoC's Tables 1-6 (Cozzolino et al. 2021) on the config's detectors: the baselines
    crafted on some of them, SpoC trained on target-camera images alone, each attack judged
    by every detector, on synthetic inputs (SpoC's S) and on real photos of other cameras."""

    targets: tuple[str, ...] = option(REQUIRED, "target camera models, one generator each")
    inputs: tuple[Literal["synthetic", "real"], ...] = option(
        ("synthetic", "real"),
        "S: synthetic images (SpoC's setting) and/or real patches of the other camera models",
    )
    psnr: float = option(31.0, "PSNR every method is tuned to (SpoC: ~31 dB)", minimum=0)
    eps: tuple[float, ...] = option(
        (2.0, 4.0, 8.0), "Linf budgets (0-255) the gradient attacks choose from by PSNR", minimum=0
    )
    gradient: tuple[str, ...] = option(
        ("pgd", "timifgsm"), "gradient baselines", choices=_matrix_attacks
    )
    params: dict[str, Any] = option(
        {}, "per gradient baseline, keyword arguments over SpoC's (steps 40, alpha 1.25 / 0.4)"
    )
    generative: tuple[str, ...] = option(
        ("gap", "advcamid"), "generative baselines", choices=_generative
    )
    crafted_on: tuple[str, ...] = option(
        (),
        "detectors the baselines are crafted on, a block of Table 4 each (default: the first "
        "two of detectors:; SpoC: Bondi2017 and Xception)",
    )
    gan_detectors: tuple[str, ...] = option(
        (),
        "architectures of the GAN-image detectors of Tables 1-2, trained on real vs synthetic "
        "images (SpoC: spec, xception; none: no Tables 1-2)",
        choices=_architectures,
    )
    ensemble: bool = option(True, "the third block: crafted on the other detectors, judged on one")
    gap_eps: float = option(8.0, "GAP's Linf budget, 0-255 (SpoC: 8)", minimum=1)
    generator_iterations: int = option(300, "GAP / Adv-Cam-Id iterations at most", minimum=1)
    generator_batch: int = option(10, "GAP / Adv-Cam-Id patches per iteration", minimum=1)
    train_patches: int = option(
        600, "images of S (and of the target camera) to train on", minimum=1
    )
    val_patches: int = option(32, "images of S to validate and tune the PSNR on", minimum=1)
    eval_patches: int = option(100, "images of S attacked per target and input", minimum=1)
    synthetic: SpocSyntheticConfig = option(SpocSyntheticConfig(), "the synthetic sources")
    gan_train: dict[str, Any] = option(
        {}, "train keys of the two GAN-image detectors (spec, xception)", partial_of=TrainConfig
    )
    embedder: SpocEmbedderConfig = option(SpocEmbedderConfig(), "the embedder pretraining")
    training: SpocTrainingConfig = option(SpocTrainingConfig(), "SpoC's generator training")
    ablation: bool = option(True, "Table 5: only-embedder and only-discriminator generators")
    batch_size: int = option(64, "patches per attack batch", minimum=1)
    examples: int = option(3, "patches per target in the examples figure", minimum=0)

    def check(self, path: str) -> None:
        if not self.inputs or not self.eps:
            _fail(f"{path}.{'eps' if self.inputs else 'inputs'}", "give at least one value")
        if "jsma" in self.gradient:
            _fail(f"{path}.gradient", "jsma has no eps to tune to a PSNR; drop it")
        unknown = sorted(set(self.params) - set(self.gradient))
        if unknown:
            _fail(f"{path}.params", f"{unknown} are not gradient baselines: {self.gradient}")
        for name, params in self.params.items():
            if not isinstance(params, Mapping) or "eps" in params:
                _fail(f"{path}.params.{name}", f"keyword arguments without eps ({path}.eps)")
        side = self.synthetic.size
        if side % 4 or (side // 4) & (side // 4 - 1):
            _fail(f"{path}.synthetic.size", f"{side} is not 4 x a power of two (e.g. 64, 128)")


MATRIX_ATTACKS = (
    *("fgsm", "llcm", "bim", "pgd", "mifgsm", "timifgsm", "jsma", "square"),
    *("noise", "noise-luma"),  # controls: random signs of the same radius
)


@dataclass(frozen=True)
class AdaptiveConfig:
    """Adaptive evaluation (Athalye et al. 2018; Carlini et al. 2019; AutoAttack's checks):
    stronger and different attacks on every detector of the matrix, and the sanity checks."""

    steps: int = option(50, "PGD steps (step size 2.5 eps / steps, Madry et al.)", minimum=1)
    restarts: int = option(3, "PGD random restarts; a patch counts if any succeeds", minimum=1)
    losses: tuple[str, ...] = option(
        ("ce", "dlr"),
        "losses of the strong PGD cells (ce: cross-entropy, cw: Carlini-Wagner margin, dlr: "
        "AutoAttack's DLR, >= 3 classes), each at every eps; the checks take the strongest",
        choices=_losses,
    )
    eps: tuple[float, ...] = option(
        (1.0, 2.0, 4.0, 8.0, 16.0),
        "epsilons (0-255) of the PGD sweep checked for non-decreasing success; the "
        "matrix's eps is added",
        minimum=1,
    )
    unbounded: float = option(
        255.0, "an epsilon that reaches any image: PGD there must reach ~100%", minimum=1
    )
    queries: int = option(1000, "Square Attack queries per patch (gradient-free)", minimum=1)
    surrogate: str | None = option(
        None, "undefended detector the transfer attack is crafted on (default: the first)"
    )
    slack: float = option(
        0.05,
        "how far a rate may fall on the wrong side before a check fails (sampling noise)",
        minimum=0,
        maximum=1,
    )

    def check(self, path: str) -> None:
        if not self.losses or len(set(self.losses)) < len(self.losses):
            _fail(f"{path}.losses", f"{list(self.losses)}: give each loss once, at least one")


@dataclass(frozen=True)
class RobustnessConfig:
    """The robustness matrix: every attack against every detector of ``detectors:`` (each
    row named by its entry), one epsilon, on uint8 and after JPEG; cells run sharded over
    the processes of ``torchrun``."""

    eps: float = option(
        4.0, "the matrix's Linf budget in 0-255 pixel units (below 1 nothing moves)", minimum=1
    )
    attacks: tuple[str, ...] = option(
        MATRIX_ATTACKS, "columns: attacks by name (jsma has no eps)", choices=_matrix_attacks
    )
    params: dict[str, Any] = option(
        {}, "per attack, its keyword arguments, e.g. {square: {queries: 300}, pgd: {steps: 20}}"
    )
    split: Literal["train", "val", "eval"] = option("eval", "split of the patch store attacked")
    patches: int = option(100, "patches picked per detector (seeded)", minimum=1)
    select: Literal["correct", "all"] = option(
        "correct", "correct: correctly classified patches only (success = error rate); all: any"
    )
    jpeg: int = option(90, "JPEG quality the outputs are also judged after", minimum=1, maximum=100)
    batch_size: int = option(64, "patches per attack batch", minimum=1)
    precision: Literal["fp32", "bf16", "auto"] = option(
        "fp32",
        "arithmetic of the gradient passes; auto picks bf16 by timing, so a loaded machine "
        "may change the numbers (and the sharded matrix may differ from one process's)",
    )
    adaptive: AdaptiveConfig | None = option(
        None, "adaptive attacks and sanity checks ({} for the defaults; null: the matrix only)"
    )

    def check(self, path: str) -> None:
        unknown = sorted(set(self.params) - set(self.attacks))
        if unknown:
            _fail(f"{path}.params", f"{unknown} are not attacks of the matrix: {self.attacks}")
        for name, params in self.params.items():
            if not isinstance(params, Mapping):
                _fail(f"{path}.params.{name}", f"a mapping of keyword arguments, not {params!r}")
            if "eps" in params:
                _fail(f"{path}.params.{name}.eps", f"the matrix's budget is {path}.eps")


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: ``camtrace run CONFIG``."""

    name: str = option("experiment", "run folder name: runs/<name>")
    seed: int = option(0, "seed of the split, the patches, training and attacks", minimum=0)
    workdir: str = option("data", "cache of simulated data and patch stores")
    data: DataConfig = option(DataConfig(), "the data section")
    split: SplitConfig = option(SplitConfig(), "the split section")
    patches: PatchesConfig | None = option(None, "patches of every detector")
    detector: DetectorConfig | None = option(None, "one detector (default: bondi2017)")
    detectors: tuple[DetectorConfig, ...] = option((), "a zoo of detectors, instead of detector")
    train: dict[str, Any] = option({}, "the train section", partial_of=TrainConfig)
    svm: dict[str, Any] = option({}, "the svm section", partial_of=SvmConfig)
    evaluate: EvaluateConfig = option(EvaluateConfig(), "the evaluate section")
    attacks: AttacksConfig | None = option(None, "the attacks section")
    generators: GeneratorsConfig | None = option(None, "the generators section")
    robustness: RobustnessConfig | None = option(None, "the robustness matrix section")
    spoc: SpocSectionConfig | None = option(None, "SpoC's Tables 1-6 section")
    spoof: SpoofConfig | None = option(None, "whole photos spoofed, before and after")
    audit: bool = option(
        False, "check the data for shortcuts first (camtrace audit) into runs/<name>/audit/"
    )

    def zoo(self) -> tuple[DetectorConfig, ...]:
        """The detectors trained: ``detectors``, else ``detector``, else Bondi2017."""
        return self.detectors or (self.detector or DetectorConfig(),)

    def train_config(self, detector: DetectorConfig) -> TrainConfig:
        """Top-level ``train`` with the detector's own keys over it, at the experiment's seed."""
        return TrainConfig(seed=self.seed, **{**self.train, **detector.train})

    def svm_config(self, detector: DetectorConfig) -> SvmConfig:
        return SvmConfig(**{**self.svm, **detector.svm})

    def to_dict(self) -> dict[str, Any]:
        """The config as a YAML mapping that parses back to it, every default written out
        (keys that do not apply, such as ``data.root`` when simulating, left out)."""
        return _as_yaml(self)


def _as_yaml(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        out = {}
        for f in dataclasses.fields(value):
            item, when = getattr(value, f.name), f.metadata.get("when")
            if item is None or (when and getattr(value, when[0]) not in when[1]):
                continue
            out[f.name] = _as_yaml(item)
        return out
    if isinstance(value, dict):
        return {k: _as_yaml(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_yaml(v) for v in value]
    return value


# -- parsing -------------------------------------------------------------------------------------


def _keys(cls: type) -> dict[str, dataclasses.Field]:
    """A section's keys: its fields (``train``: TrainConfig's, its seed excepted)."""
    fields = dataclasses.fields(cls)
    return {f.name: f for f in fields if cls is not TrainConfig or f.name in TRAIN_KEYS}


def _meta(cls: type, f: dataclasses.Field) -> Mapping[str, Any]:
    return TRAIN_KEYS[f.name] if cls is TrainConfig else f.metadata


def parse_fields(cls: type, raw: Any, path: str) -> dict[str, Any]:
    """The keys given in ``raw`` for section ``cls``, each value checked and converted."""
    keys = _keys(cls)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        _fail(path, f"a mapping with keys {', '.join(keys)}, not {raw!r}")
    unknown = [k for k in raw if k not in keys]
    if unknown:
        _fail(
            f"{path}.{unknown[0]}" if path else str(unknown[0]),
            f"unknown key; known: {', '.join(keys)}",
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        values[key] = _value(
            hints[key], value, f"{path}.{key}" if path else key, _meta(cls, keys[key])
        )
    for key in values:
        when = _meta(cls, keys[key]).get("when")
        if when:
            on, allowed = when
            actual = values.get(on, keys[on].default)
            if actual not in allowed:
                _fail(f"{path}.{key}", f"applies to {on} {' or '.join(allowed)} only, not {actual}")
    return values


def parse_section(cls: type, raw: Any, path: str) -> Any:
    """Section ``cls`` from ``raw`` (None: all defaults)."""
    shorthand = getattr(cls, "SHORTHAND", None)
    if shorthand and isinstance(raw, str):
        raw = {shorthand: raw}
    values = parse_fields(cls, raw, path)
    for name, f in _keys(cls).items():
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            if name not in values:
                _fail(f"{path}.{name}", "required")
    section = cls(**values)
    if hasattr(section, "check"):
        section.check(path)
    return section


def _describe(hint: Any, meta: Mapping[str, Any]) -> str:
    """The allowed values of a key, for an error message and the reference."""
    choices = meta.get("choices")
    if choices is not None:
        return " | ".join(str(c) for c in choices()) + (" | null" if _optional(hint) else "")
    return _type_name(hint, meta)


def _optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def _bounds(meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("minimum"), meta.get("maximum")
    if lo is not None and hi is not None:
        return f" {lo:g}-{hi:g}"
    return "" if lo is None else f" >= {lo:g}"


def _type_name(hint: Any, meta: Mapping[str, Any]) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a, meta) for a in args)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0], meta)}"
        return f"[{', '.join(_type_name(a, meta) for a in args)}]"
    if hint is type(None):
        return "null"
    if dataclasses.is_dataclass(hint):
        return "mapping"
    if origin is dict or meta.get("partial_of"):
        return "mapping"
    name = getattr(hint, "__name__", str(hint))
    return name + (_bounds(meta) if hint in (int, float) else "")


def _value(hint: Any, raw: Any, path: str, meta: Mapping[str, Any]) -> Any:
    """``raw`` checked against ``hint`` (and ``meta``'s choices and bounds)."""
    try:
        return _convert(hint, raw, path, meta)
    except _Mismatch:
        _fail(path, f"{raw!r} is not allowed; use {_describe(hint, meta)}")


class _Mismatch(Exception):
    """``raw`` does not fit the type tried (another branch of a union may)."""


def _convert(hint: Any, raw: Any, path: str, meta: Mapping[str, Any]) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if meta.get("partial_of"):
        return parse_fields(meta["partial_of"], raw, path)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, raw, path, meta)
            except _Mismatch:
                continue
        raise _Mismatch
    if dataclasses.is_dataclass(hint):
        if (
            isinstance(raw, Mapping)
            or raw is None
            or (isinstance(raw, str) and hasattr(hint, "SHORTHAND"))
        ):
            return parse_section(hint, raw, path)
        raise _Mismatch
    if origin is Literal:
        if raw in args and isinstance(raw, str):
            return raw
        raise _Mismatch
    if origin is tuple:
        items = raw if isinstance(raw, list) else None
        if args[-1] is Ellipsis:
            if items is None and not isinstance(raw, (Mapping, list)):
                items = [raw]  # one value stands for a list of one
            if items is None:
                raise _Mismatch
            return tuple(_value(args[0], v, f"{path}[{i}]", meta) for i, v in enumerate(items))
        if items is None or len(items) != len(args):
            raise _Mismatch
        return tuple(
            _value(a, v, f"{path}[{i}]", meta) for i, (a, v) in enumerate(zip(args, items))
        )
    if origin is dict:
        if isinstance(raw, Mapping):
            return dict(raw)
        raise _Mismatch
    if hint is Any:
        return raw
    return _scalar(hint, raw, meta)


_YAML12_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _scalar(hint: Any, raw: Any, meta: Mapping[str, Any]) -> Any:
    if hint is float and isinstance(raw, str) and _YAML12_FLOAT.fullmatch(raw):
        raw = float(raw)  # PyYAML follows YAML 1.1, which reads 1e-3 (no dot) as a string
    if hint is bool:
        ok = isinstance(raw, bool)
    elif hint is int:
        ok = isinstance(raw, int) and not isinstance(raw, bool)
    elif hint is float:
        ok = isinstance(raw, (int, float)) and not isinstance(raw, bool)
    else:
        ok = isinstance(raw, hint)
    if not ok:
        raise _Mismatch
    if hint in (int, float):
        lo, hi = meta.get("minimum"), meta.get("maximum")
        if (lo is not None and raw < lo) or (hi is not None and raw > hi):
            raise _Mismatch
        raw = hint(raw)
    choices = meta.get("choices")
    if choices is not None and raw not in choices():
        raise _Mismatch
    return raw


def parse_config(raw: Any, source: str = "config") -> ExperimentConfig:
    """The typed experiment config of a YAML mapping; a bad key or value fails in one line
    naming its key path and the allowed values."""
    if not isinstance(raw, Mapping):
        _fail(
            source, f"a config is a YAML mapping with sections {', '.join(_keys(ExperimentConfig))}"
        )
    return on_bench(parse_section(ExperimentConfig, raw, ""))


def on_bench(config: ExperimentConfig) -> ExperimentConfig:
    """``data: {source: bench}`` resolved: the bench's simulated data and its split, at its
    seed (a split section or another seed would not be the bench: one line)."""
    if config.data.source != "bench":
        return config
    bench = get_bench(config.data.bench)
    sections = bench.config_sections()
    if config.split != SplitConfig():
        _fail(
            "split", f"data.source bench fixes the split ({bench.name}'s); drop the split section"
        )
    if config.seed != sections["seed"]:
        _fail(
            "seed",
            f"{bench.name} is split with seed {sections['seed']}; set seed: {sections['seed']}",
        )
    return dataclasses.replace(
        config,
        data=parse_section(DataConfig, sections["data"], "data"),
        split=parse_section(SplitConfig, sections["split"], "split"),
    )


# -- the reference -------------------------------------------------------------------------------

SECTIONS: dict[str, type] = {
    "top level": ExperimentConfig,
    "data": DataConfig,
    "split": SplitConfig,
    "patches": PatchesConfig,
    "detector / detectors[i]": DetectorConfig,
    "train": TrainConfig,
    "svm": SvmConfig,
    "detector.defense / detectors[i].defense": DefenseConfig,
    "evaluate": EvaluateConfig,
    "attacks": AttacksConfig,
    "attacks.runs[i] / attacks.transfer": AttackRunConfig,
    "generators": GeneratorsConfig,
    "generators.unseen": UnseenConfig,
    "robustness": RobustnessConfig,
    "robustness.adaptive": AdaptiveConfig,
    "spoc": SpocSectionConfig,
    "spoc.synthetic": SpocSyntheticConfig,
    "spoc.embedder": SpocEmbedderConfig,
    "spoc.training": SpocTrainingConfig,
}


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value) or (isinstance(value, dict) and not value):
        return ""
    if value is None:
        return "null"
    if isinstance(value, tuple):
        return "[" + ", ".join("null" if v is None else f"{v}" for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def config_reference() -> str:
    """The config reference in markdown: one table per section (key, type, default, meaning),
    from the definitions above; the README holds exactly this text."""
    out = []
    for title, cls in SECTIONS.items():
        out += [f"**{title}**", "", "| key | type / allowed values | default | meaning |"]
        out.append("|---|---|---|---|")
        hints = typing.get_type_hints(cls)
        for name, f in _keys(cls).items():
            meta = _meta(cls, f)
            kind = _describe(hints[name], meta).replace("|", "\\|")
            default = _default(f).replace("|", "\\|")
            when = meta.get("when")
            only = f" ({when[0]} {' or '.join(when[1])} only)" if when else ""
            out.append(f"| `{name}` | {kind} | {default} | {meta['doc']}{only} |")
        out.append("")
    return "\n".join(out)
