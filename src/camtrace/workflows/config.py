"""The experiment config, typed: one YAML mapping parsed into the sections below.

Every section is a :class:`camtrace.schema.Section` whose fields carry their meaning and
allowed values, so one set of definitions parses a config (:func:`parse_config`), names a
bad key or value in one line by its key path (``attacks.runs[2].eps``), and writes the JSON
Schema and the config reference (:func:`config_reference`). The engines' settings are
sections themselves: ``train`` is :class:`camtrace.training.engine.TrainConfig`, a
``defense`` :class:`camtrace.defenses.DefenseConfig`, ``generators`` extends
:class:`camtrace.attacks.generative.GeneratorConfig` and ``spoc.training`` is
:class:`camtrace.attacks.generative.SpoCConfig`; ``train`` and ``svm`` may be given again
under a detector of ``detectors:``, where the keys given override the top-level ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Literal

from pydantic import create_model

from camtrace.attacks.generative.spoc_embedder import EmbedderConfig
from camtrace.attacks.generative.spoc_training import SpoCConfig
from camtrace.attacks.generative.training import GeneratorConfig
from camtrace.data.bench import get_bench
from camtrace.defenses import DefenseConfig
from camtrace.errors import CamtraceError
from camtrace.schema import (
    REQUIRED,
    Invalid,
    Section,
    json_schema,
    option,
    parse,
    reference,
    rule_of,
    yaml_value,
)
from camtrace.training.engine import TrainConfig

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
    from camtrace.attacks.losses import LOSSES

    return tuple(LOSSES)


def _residuals() -> Sequence[str]:
    from camtrace.models.spoofnet import RESIDUALS

    return RESIDUALS


def _matrix_attacks() -> Sequence[str]:
    from camtrace.attacks import matrix_attacks

    return matrix_attacks()


SIMULATE = ("source", ("simulate",))
INDEX = ("source", ("index",))
BONDI = ("protocol", ("bondi",))
SPLITS = ("train", "val", "eval")


class DataConfig(Section):
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

    def check(self) -> None:
        required = {"index": ("root", "layout"), "manifest": ("path",)}.get(self.source, ())
        for key in required:
            if getattr(self, key) is None:
                raise Invalid(key, f"required with source {self.source}")


class SplitConfig(Section):
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
        applies = (n for n in type(self).model_fields if rule_of(type(self), n).when)
        return {
            n: getattr(self, n) for n in applies if self.protocol in rule_of(type(self), n).when[1]
        } | {"protocol": self.protocol}


class PatchesConfig(Section):
    """How patches are cut (``camtrace.data.patches``); a plain name stands for its protocol."""

    SHORTHAND = "protocol"

    protocol: str | None = option(
        None,
        "bondi (64 px, top 32 by quality), guera (32 px, 500 random), gan (256 px, all); "
        "default: the detector's own",
        choices=_protocols,
    )
    size: int | None = option(None, "patch size in pixels (default: the protocol's)", minimum=1)
    count: int | None = option(None, "patches per image (default: the protocol's)", minimum=1)


class SvmConfig(Section):
    """Bondi's battery of one-vs-one SVMs on the CNN features (Bondi Sec. II-B)."""

    enabled: bool | None = option(None, "fit the SVMs (default: for bondi2017 only)")
    Cs: tuple[float, ...] | None = option(
        None, "values of C tried, chosen on validation patch accuracy", minimum=0
    )


class DetectorConfig(Section):
    """One detector; a plain name (``- mislnet``) stands for ``{arch: mislnet}``."""

    SHORTHAND = "arch"

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
    train: TrainConfig = option(
        TrainConfig(), "keys of train: overriding the top-level ones (seed: the experiment's)"
    )
    svm: SvmConfig = option(SvmConfig(), "keys of svm: overriding the top-level ones")
    defense: DefenseConfig | None = option(
        None, "training-time defence of Zhao (a kind, or a mapping; default: none)"
    )

    def check(self) -> None:
        _no_seed(self.train)
        if self.pretrained is None:
            return
        for key in ("patches", "train", "svm", "defense"):
            if key in self.model_fields_set:
                raise Invalid(key, "a pretrained detector is used as shipped: drop this key")

    def to_dict(self) -> dict[str, Any]:
        """As a YAML mapping; its train and svm keep only the keys given (overrides)."""
        out = _overrides(self, super().to_dict(), ("train", "svm"))
        if self.pretrained:
            out.pop("arch")  # its own
        return out

    def label(self) -> str:
        """The detector's name in the run: ``name``, else the pretrained name, else arch
        (+ ``-kind`` when defended)."""
        if self.name:
            return self.name
        if self.pretrained:
            return self.pretrained
        kind = self.defense.kind if self.defense else "none"
        return self.arch.lower() if kind == "none" else f"{self.arch.lower()}-{kind}"


class EvaluateConfig(Section):
    """Identification on held-out patches and images (Bondi Sec. III)."""

    split: Literal["train", "val", "eval"] = option("eval", "split evaluated")
    voting_ks: tuple[int, ...] = option(
        (1, 2, 4, 8, 16, 32), "patches per image in the majority-vote curve", minimum=1
    )


class AttackRunConfig(Section):
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


class AttacksConfig(Section):
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


class AttackSettings(Section):
    """One attack of whole photos (``camtrace attack``, :func:`camtrace.spoof`): the method
    with its budget and parameters, the target, and how the photo is attacked (Chen Sec. 3.4:
    patch by patch, stitched, written as a real file and identified again)."""

    method: str = option("pgd", "the attack", choices=_attacks)
    eps: float | None = option(
        None,
        "budget: 0-255 pixel units (>= 1), or < 1 on the [0, 1] scale (default: the attack's)",
        minimum=0,
    )
    params: dict[str, Any] = option(
        {}, "the attack's other keyword arguments (alpha, steps, ...), 0-255 units"
    )
    generator: str | None = option(
        None, "generative attacks: a generator checkpoint or a trained generator's name"
    )
    target: str | None = option(
        None, "camera model to spoof (default: untargeted; a generator's own target)"
    )
    through_jpeg: bool = option(
        False, "gradient attacks: the gradient through the written JPEG too (a .jpg output)"
    )
    rounds: int = option(3, "re-identify and re-attack failing patches up to this many", minimum=1)
    seed: int = option(0, "seed of the random starts: same seed, same output", minimum=0)

    def check(self) -> None:
        from camtrace.attacks.generative import METHODS

        if "eps" in self.params or "generator" in self.params:
            raise Invalid("params", "give eps and generator as their own keys")
        if self.method in METHODS and self.generator is None:
            raise Invalid(
                "generator", f"method {self.method} needs a trained generator (--generator)"
            )
        if self.method not in METHODS and self.generator is not None:
            raise Invalid(
                "generator",
                f"is for the generative methods ({', '.join(METHODS)}), not {self.method}",
            )

    def pixels(self) -> tuple[float | None, str]:
        """The budget in 0-255 pixel units, and how it was read (for the CLI to say)."""
        from camtrace.attacks import as_pixel_eps

        return (None, "") if self.eps is None else as_pixel_eps(self.eps)

    def build(self, jpeg: Any = None, progress: bool = False) -> Any:
        """The attack; ``jpeg``: the written file's setting, which ``through_jpeg`` takes the
        gradient through."""
        from camtrace.attacks import make_attack

        params = dict(self.params)
        eps, _ = self.pixels()
        if eps is not None:
            params["eps"] = eps
        if self.generator is not None:
            params["generator"] = self.generator
        if self.through_jpeg:
            if jpeg is None:
                raise CamtraceError("through_jpeg needs a JPEG output; write a .jpg")
            params |= {"jpeg": jpeg, "through_jpeg": True}
        return make_attack(self.method, progress=progress, **params)


class SpoofConfig(AttackSettings):
    """Whole photos of the evaluation split spoofed toward another camera model, written as
    real files and identified again (a run's ``spoof:`` section)."""

    detector: str | None = option(None, "the run's detector attacked (default: the first)")
    photos: int = option(1, "photos spoofed: the first eval photo of the first models", minimum=1)


class SpoofTrainConfig(TrainConfig):
    """SpoofNet's training: the engine's settings (``train:``) with a short Adam run's
    defaults; every key but ``seed`` (the experiment's)."""

    epochs: int = option(8, "training epochs (the best validation loss is kept)", minimum=1)
    batch_size: int = option(64, "patches per step", minimum=1)
    lr: float = option(1e-3, "learning rate", minimum=0)
    weight_decay: float = option(0.0, "L2 weight decay", minimum=0)
    optimizer: Literal["sgd", "adam"] = option("adam", "sgd or adam")


class SpoofDetectionConfig(Section):
    """Spoof detection: was this patch processed by a counter-forensic attack? SpoofNet
    (camtrace.models.spoofnet) trained on clean, re-saved and attacked patches of the split's
    train and val patches, measured on its eval patches: the detection rate per attack, held-out
    attacks (and the generators section's generators) included, the false-positive rate on
    clean patches and on clean patches re-saved as JPEG, and detect-spoof's verdict on whole
    photos."""

    against: tuple[str, ...] | None = option(
        None, "the run's detectors the attacks are crafted against (default: every one)"
    )
    train_patches: int = option(
        1200,
        "clean train-split patches: each also attacked once (the training attacks in turn), "
        "half also re-saved as JPEG",
        minimum=2,
    )
    val_patches: int = option(300, "the same from the val split (best epoch)", minimum=2)
    eval_patches: int = option(
        400, "clean eval-split patches, and as many re-saved at each eval JPEG quality", minimum=1
    )
    attack_patches: int = option(
        100,
        "eval patches per attack, epsilon and detector attacked (a run's patches: fewer)",
        minimum=1,
    )
    jpeg_train: tuple[int, int] = option(
        (70, 95),
        "[lo, hi]: quality each re-saved training negative is drawn from",
        minimum=1,
        maximum=100,
    )
    jpeg_eval: tuple[int, ...] = option(
        (90, 75), "qualities the evaluation negatives are re-saved at", minimum=1, maximum=100
    )
    train_attacks: tuple[AttackRunConfig, ...] = option(
        (),
        "the attacks of the positives in training, each as attacks.runs[i] (each eps and "
        "detector a setting; targets: none, all or a list, patch i toward the i-th in turn)",
    )
    held_out: tuple[AttackRunConfig, ...] = option(
        (), "attacks never seen in training, measured only (as train_attacks)"
    )
    generative: bool = option(
        True, "the generators section's trained generators as held-out attacks too"
    )
    residuals: tuple[str, ...] = option(
        ("srm+bayar",),
        "SpoofNet candidates by residual layer (srm, bayar, srm+bayar); the first is the run's "
        "spoof detector",
        choices=_residuals,
    )
    linear: bool = option(
        True,
        "also the residual-feature + linear candidate: SPAM features and a linear SVM (Liu et "
        "al. 2019's steganalysis view)",
    )
    train: SpoofTrainConfig = option(SpoofTrainConfig(), "SpoofNet's training")
    photos: SpoofConfig | None = option(
        None,
        "whole eval photos spoofed (as a spoof: section), then each judged by detect-spoof's "
        "learned verdict, as is, clean and re-saved as JPEG",
    )

    def check(self) -> None:
        if not self.train_attacks:
            raise Invalid("train_attacks", "give at least one attack to train on")
        if self.jpeg_train[0] > self.jpeg_train[1]:
            raise Invalid("jpeg_train", f"[lo, hi] with lo <= hi, not {list(self.jpeg_train)}")
        if not self.residuals:
            raise Invalid("residuals", "give at least one SpoofNet residual layer")
        _no_seed(self.train)

    def to_dict(self) -> dict[str, Any]:
        """As a YAML mapping, every default written out but train's seed (the experiment's)."""
        out = super().to_dict()
        out["train"].pop("seed")
        return out


class UnseenConfig(Section):
    """Camera models no part of training used (Chen Sec. 4.3), simulated with the data
    section's scenes, size and seed."""

    preset: str = option("unseen", "SimCam preset of the unseen models, name or YAML path")
    shots: int = option(4, "scenes each unseen device shoots", minimum=1)


class DrawnModelsConfig(UnseenConfig):
    """Camera models drawn inside the known ones' ranges (SimCam's ``many`` preset), simulated
    with the data section's scenes, size and seed."""

    preset: str = option("many", "SimCam preset of the drawn models, name or YAML path")
    shots: int = option(4, "scenes each drawn model's device shoots", minimum=1)


class OpenSetConfig(Section):
    """Open-set identification (camtrace.models.openset): each detector calibrated on the
    data's splits (the Mahalanobis cloud from training images, every score's threshold at
    ``frr`` on the validation images), then known evaluation images told from camera models
    held out of training, simulated with the data section's scenes, size and seed."""

    frr: float = option(
        0.05,
        "false-rejection rate of known models the thresholds are set to, on validation",
        minimum=0,
        maximum=0.5,
    )
    cloud_images: int = option(
        40, "training images per model in the Mahalanobis score's cloud", minimum=2
    )
    unseen: UnseenConfig = option(
        UnseenConfig(), "held-out models measured on: a preset of other makes"
    )
    many: DrawnModelsConfig = option(
        DrawnModelsConfig(),
        "held-out models drawn in the known ones' ranges: the first half of them chooses each "
        "detector's score (by AUROC), the second half measures it",
    )


class GeneratorsConfig(GeneratorConfig):
    """Generative attacks (Chen 2019 Tables 3-4): one generator per target, trained against
    trained detectors of this config, evaluated on seen and unseen camera models. The
    training keys are :class:`camtrace.attacks.generative.GeneratorConfig`'s."""

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
    alpha_sweep: tuple[float, ...] = option(
        (),
        "instead of alpha: one generator per target and value, compared on their learning "
        "curves (Chen does not say on what scale Eq. 3's L1 is taken: 1 is grey levels, "
        "1/255 the [0, 1] scale)",
        minimum=0,
    )
    unseen: UnseenConfig | None = option(
        None, "camera models no part of training used, e.g. {preset: unseen, shots: 4}"
    )
    photos: int = option(
        0,
        "whole eval photos per seen source model, each spoofed in one tiled pass (Chen Sec. "
        "3.4) and identified as camtrace identify does by the first detector it trains against",
        minimum=0,
    )
    examples: int = option(4, "patches per target in the examples figure", minimum=0)
    pretrained: bool = option(
        False,
        "use the zoo's <method>-<target> generator where one was trained against these "
        "shipped detectors (camtrace models); train only the missing ones",
    )

    def check(self) -> None:
        super().check()
        if "eps" in self.model_fields_set and self.method != "gap":
            raise Invalid("eps", f"applies to method gap only, not {self.method}")
        if self.pretrained and self.alpha_sweep:
            raise Invalid("pretrained", "the zoo has one generator per target; drop alpha_sweep")


class SpocSyntheticConfig(Section):
    """SpoC's set S (Sec. 5.1): the synthetic-image sources trained on the real training
    photos (:func:`camtrace.training.gan_sources.make_synthetic`), cached by digest."""

    size: int = option(128, "image side of the sources (4 x a power of two; SpoC: 256)", minimum=16)
    iterations: int = option(100, "training iterations per source", minimum=1)
    train: int = option(200, "train images per training source (SpoC: 20,000)", minimum=1)
    val: int = option(50, "val images per training source", minimum=1)
    eval: int = option(
        100, "eval images per source, held-out one included (SpoC: 2,000)", minimum=1
    )


class SpocEmbedderConfig(EmbedderConfig):
    """SpoC's embedder, pre-trained once on the camera models of a SimCam preset none of the
    detectors knows (SpoC: 600 models), cached by digest and reused across runs; the
    training keys are :class:`camtrace.attacks.generative.EmbedderConfig`'s."""

    path: str | None = option(
        None, "a pre-trained embedder.safetensors (default: pre-train on preset, cached)"
    )
    preset: str = option("many", "SimCam preset of the embedder's camera models")
    shots: int = option(2, "scenes each of its devices shoots", minimum=1)
    count: int = option(16, "patches per image", minimum=1)


class SpocSectionConfig(Section):
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
    gan_train: TrainConfig = option(
        TrainConfig(), "train keys of the two GAN-image detectors (spec, xception)"
    )
    embedder: SpocEmbedderConfig = option(SpocEmbedderConfig(), "the embedder pretraining")
    training: SpoCConfig = option(SpoCConfig(), "SpoC's generator training")
    ablation: bool = option(True, "Table 5: only-embedder and only-discriminator generators")
    rec_sweep: tuple[float, ...] = option(
        (),
        "weights of L_REC (training.lambda_rec) trained beside SpoC on the first kind of S, "
        "variants spoc-rec-<weight> compared on their learning curves and in Table 5",
        minimum=0,
    )
    pretrained: bool = option(
        False,
        "on SimCam-Bench, use the zoo's spoc-<target> generator (trained on synthetic S at "
        "these patches, no detector) for SpoC on synthetic inputs; train only the missing ones",
    )
    batch_size: int = option(64, "patches per attack batch", minimum=1)
    examples: int = option(3, "patches per target in the examples figure", minimum=0)

    def to_dict(self) -> dict[str, Any]:
        """As a YAML mapping; gan_train keeps only the keys given (overrides)."""
        return _overrides(self, super().to_dict(), ("gan_train",))

    def check(self) -> None:
        _no_seed(self.gan_train)
        if not self.inputs or not self.eps:
            raise Invalid("eps" if self.inputs else "inputs", "give at least one value")
        if "jsma" in self.gradient:
            raise Invalid("gradient", "jsma has no eps to tune to a PSNR; drop it")
        unknown = sorted(set(self.params) - set(self.gradient))
        if unknown:
            raise Invalid("params", f"{unknown} are not gradient baselines: {self.gradient}")
        for name, params in self.params.items():
            if not isinstance(params, Mapping) or "eps" in params:
                raise Invalid(f"params.{name}", "keyword arguments without eps (spoc.eps)")
        side = self.synthetic.size
        if side % 4 or (side // 4) & (side // 4 - 1):
            raise Invalid("synthetic.size", f"{side} is not 4 x a power of two (e.g. 64, 128)")


class PrnuConfig(Section):
    """PRNU device fingerprints (Lukas et al. 2006; Chen et al. 2008): each device's
    fingerprint enrolled from its photos of the scenes outside the evaluation split, every
    photo of the evaluation scenes matched against every device by PCE (Goljan et al. 2009)."""

    enrol: int = option(
        40,
        "photos per device its fingerprint is estimated from: the first by shot among its "
        "photos of scenes outside the evaluation split",
        minimum=1,
    )
    photos: int | None = option(
        None,
        "photos per device matched: the first by shot among its evaluation-scene photos "
        "(default: all)",
        minimum=1,
    )
    threshold: float = option(
        60.0, "PCE at or above which a photo is declared the device's (Goljan 2009: 60)", minimum=0
    )
    neighbourhood: int = option(
        11, "side of the square around the peak left out of the PCE's energy", minimum=1
    )
    levels: int = option(4, "wavelet levels of the denoiser (Lukas 2006: 4)", minimum=1)
    sigma: float = option(
        5.0, "the denoiser's noise std in grey levels (Lukas 2006: 5)", minimum=0.5
    )
    workers: int = option(2, "processes computing the residuals", minimum=1)


class RobustnessPrnuConfig(Section):
    """PRNU in the robustness matrix: whole evaluation photos spoofed by each attack of the
    matrix (gradient attacks toward the next camera model, generators toward their target),
    then tested against the source device's fingerprint and the target model's devices'."""

    photos: int = option(
        2,
        "evaluation photos spoofed per detector and attack: one of each of the first "
        "`photos` camera models, each from another evaluation scene",
        minimum=1,
    )
    enrol: int = option(
        40,
        "photos per device its fingerprint is estimated from (as prnu.enrol: scenes outside "
        "the evaluation split)",
        minimum=1,
    )
    threshold: float = option(60.0, "PCE at or above which a photo matches a device", minimum=0)


class AdaptiveConfig(Section):
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

    def check(self) -> None:
        if not self.losses or len(set(self.losses)) < len(self.losses):
            raise Invalid("losses", f"{list(self.losses)}: give each loss once, at least one")


class RobustnessConfig(Section):
    """The robustness matrix: every attack against every detector of ``detectors:`` (each
    row named by its entry), one epsilon, on uint8 and after JPEG; cells run sharded over
    the processes of ``torchrun``."""

    eps: float = option(
        4.0, "the matrix's Linf budget in 0-255 pixel units (below 1 nothing moves)", minimum=1
    )
    attacks: tuple[str, ...] = option(
        _matrix_attacks,
        "columns: attacks by name (jsma has no eps; default: every one of the registry's Linf "
        "attacks and the random-sign controls)",
        choices=_matrix_attacks,
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
    prnu: RobustnessPrnuConfig | None = option(
        None,
        "whole photos spoofed by each attack, tested against the source and target devices' "
        "PRNU ({} for the defaults; null: none)",
    )

    def check(self) -> None:
        unknown = sorted(set(self.params) - set(self.attacks))
        if unknown:
            raise Invalid("params", f"{unknown} are not attacks of the matrix: {self.attacks}")
        for name, params in self.params.items():
            if not isinstance(params, Mapping):
                raise Invalid(f"params.{name}", f"a mapping of keyword arguments, not {params!r}")
            if "eps" in params:
                raise Invalid(f"params.{name}.eps", "the matrix's budget is robustness.eps")


class ExperimentConfig(Section):
    """A whole experiment: ``camtrace run CONFIG``."""

    name: str = option("experiment", "run folder name: runs/<name>")
    seed: int = option(0, "seed of the split, the patches, training and attacks", minimum=0)
    workdir: str = option("data", "cache of simulated data and patch stores")
    data: DataConfig = option(DataConfig(), "the data section")
    split: SplitConfig = option(SplitConfig(), "the split section")
    patches: PatchesConfig | None = option(None, "patches of every detector")
    detector: DetectorConfig | None = option(None, "one detector (default: bondi2017)")
    detectors: tuple[DetectorConfig, ...] = option((), "a zoo of detectors, instead of detector")
    train: TrainConfig = option(TrainConfig(), "the train section (seed: the experiment's)")
    svm: SvmConfig = option(SvmConfig(), "the svm section")
    evaluate: EvaluateConfig = option(EvaluateConfig(), "the evaluate section")
    attacks: AttacksConfig | None = option(None, "the attacks section")
    generators: GeneratorsConfig | None = option(None, "the generators section")
    robustness: RobustnessConfig | None = option(None, "the robustness matrix section")
    spoc: SpocSectionConfig | None = option(None, "SpoC's Tables 1-6 section")
    spoof: SpoofConfig | None = option(None, "whole photos spoofed, before and after")
    prnu: PrnuConfig | None = option(None, "PRNU device fingerprints: enrol, match, ROC")
    openset: OpenSetConfig | None = option(
        None, "open-set identification: calibrated, measured on held-out camera models"
    )
    spoof_detection: SpoofDetectionConfig | None = option(
        None, "a learned spoof detector: trained on camtrace's attacks, measured on held-out ones"
    )
    audit: bool = option(
        False, "check the data for shortcuts first (camtrace audit) into runs/<name>/audit/"
    )

    def zoo(self) -> tuple[DetectorConfig, ...]:
        """The detectors trained: ``detectors``, else ``detector``, else Bondi2017."""
        return self.detectors or (self.detector or DetectorConfig(),)

    def train_config(self, detector: DetectorConfig) -> TrainConfig:
        """Top-level ``train`` with the detector's own keys over it, at the experiment's seed."""
        return TrainConfig(**{**self.train.given(), **detector.train.given(), "seed": self.seed})

    def svm_config(self, detector: DetectorConfig) -> SvmConfig:
        return SvmConfig(**{**self.svm.given(), **detector.svm.given()})

    def check(self) -> None:
        _no_seed(self.train)
        if self.data.source != "bench":
            return
        bench = get_bench(self.data.bench)
        seed = bench.config_sections()["seed"]
        if self.split != SplitConfig():
            raise Invalid(
                "split",
                f"data.source bench fixes the split ({bench.name}'s); drop the split section",
            )
        if self.seed != seed:
            raise Invalid("seed", f"{bench.name} is split with seed {seed}; set seed: {seed}")

    def to_dict(self) -> dict[str, Any]:
        """The config as a YAML mapping that parses back to it, every default written out
        (keys that do not apply, such as ``data.root`` when simulating, left out)."""
        out = super().to_dict()
        out["train"].pop("seed")
        return out


def _overrides(section: Section, out: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``out`` with the override sections ``keys`` written as the keys given only."""
    for key in keys:
        given = yaml_value(getattr(section, key).given())
        out.pop(key)
        out |= {key: given} if given else {}
    return out


def _no_seed(train: TrainConfig) -> None:
    if "seed" in train.model_fields_set:
        raise Invalid("train.seed", "the experiment's seed seeds training: set the top-level seed")


_EXTENSIONS: dict[str, tuple[type[Section], str]] = {}
_CONFIG: type[ExperimentConfig] = ExperimentConfig


def extend_config(key: str, section: type[Section], doc: str) -> None:
    """Add a top-level key (a plug-in experiment section's, optional) to the config schema."""
    global _CONFIG
    if key in ExperimentConfig.model_fields or key in _EXTENSIONS:
        raise CamtraceError(f"config key {key!r} is taken; name the section otherwise")
    _EXTENSIONS[key] = (section, doc)
    _CONFIG = _extended()


def retract_config(key: str) -> None:
    """Remove a key added by :func:`extend_config`."""
    global _CONFIG
    _EXTENSIONS.pop(key)
    _CONFIG = _extended()


def _extended() -> type[ExperimentConfig]:
    if not _EXTENSIONS:
        return ExperimentConfig
    fields: dict[str, Any] = {
        key: (section | None, option(None, doc)) for key, (section, doc) in _EXTENSIONS.items()
    }
    return create_model("ExperimentConfig", __base__=ExperimentConfig, **fields)


def parse_config(raw: Any, source: str = "config") -> ExperimentConfig:
    """The typed experiment config of a YAML mapping (or the config itself); a bad key or
    value fails in one line naming its key path and the allowed values. ``data: {source:
    bench}`` stays as given (:func:`on_bench` resolves it; its rules are checked here)."""
    if isinstance(raw, ExperimentConfig):
        return raw
    if not isinstance(raw, Mapping):
        keys = ", ".join(_CONFIG.model_fields)
        raise CamtraceError(f"{source}: a config is a YAML mapping with sections {keys}")
    return parse(_CONFIG, raw)


def on_bench(config: ExperimentConfig) -> ExperimentConfig:
    """``data: {source: bench}`` resolved: the bench's simulated data and its split, at its
    seed (a split section or another seed would not be the bench: the config's check refuses
    them in one line)."""
    if config.data.source != "bench":
        return config
    sections = get_bench(config.data.bench).config_sections()
    return config.replace(
        data=parse(DataConfig, sections["data"], "data"),
        split=parse(SplitConfig, sections["split"], "split"),
    )


# -- the reference -------------------------------------------------------------------------------

SECTIONS: dict[str, type[Section]] = {
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
    "generators.unseen / openset.unseen": UnseenConfig,
    "robustness": RobustnessConfig,
    "robustness.adaptive": AdaptiveConfig,
    "robustness.prnu": RobustnessPrnuConfig,
    "prnu": PrnuConfig,
    "openset": OpenSetConfig,
    "openset.many": DrawnModelsConfig,
    "spoof_detection": SpoofDetectionConfig,
    "spoof_detection.train": SpoofTrainConfig,
    "spoc": SpocSectionConfig,
    "spoc.synthetic": SpocSyntheticConfig,
    "spoc.embedder": SpocEmbedderConfig,
    "spoc.training": SpoCConfig,
}


def config_reference() -> str:
    """The config reference in Markdown, one table per section, written from the sections'
    JSON Schema (docs/config.md holds exactly this text)."""
    return reference(SECTIONS)


def config_schema() -> dict[str, Any]:
    """The JSON Schema of an experiment config file, for editors (docs/config.schema.json)."""
    return json_schema(_CONFIG, "camtrace experiment config")


def preset_schema() -> dict[str, Any]:
    """The JSON Schema of a SimCam preset file (docs/preset.schema.json); ``extends`` and
    ``all_models`` aside, which are resolved before it applies."""
    from camtrace.data.simcam.preset import PresetFile

    return json_schema(PresetFile, "SimCam preset")
