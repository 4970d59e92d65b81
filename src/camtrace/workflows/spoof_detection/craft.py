"""The spoof detector's data: clean patches of each split, the same re-saved as JPEG (negatives)
and attacked by camtrace's own attacks (positives), crafted against the run's detectors.

Every attack setting is one run of the section's attack lists at one epsilon against one
detector, built by the attack plan (:func:`camtrace.workflows.attacks.plan.plan_attacks`), so
an unknown parameter fails before any training. A setting's target follows the run's
``targets`` as a transfer reads them: none (untargeted), ``all`` or a list of models, patch i
pushed toward the i-th of them in turn, skipping its own model
(:func:`~camtrace.workflows.attacks.run.assign_targets`). Success is the attack's own fp32
verdict on its uint8 output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.progress import Progress

from camtrace.attacks import Attack, make_attack
from camtrace.data.codec import Jpeg, recompress
from camtrace.data.patch_store import PatchStore
from camtrace.data.simcam import camera_tables
from camtrace.errors import CamtraceError
from camtrace.models.base import Detector
from camtrace.workflows.attacks.plan import Epsilon, JpegChoice, RunSpec, plan_attacks
from camtrace.workflows.attacks.run import assign_targets
from camtrace.workflows.config import AttackRunConfig, AttacksConfig

BATCH = 128  # patches per attack batch


@dataclass(frozen=True)
class Setting:
    """One attack setting: ``make(model)`` builds the attack aimed at camera ``model`` (its
    JPEG, when the run stores its output as the target camera's, is that camera's);
    ``targets`` (None: untargeted) names the models the patches are pushed toward in turn;
    ``stored``: the JPEG the attacked patch is written as (plain: a lossless PNG);
    ``held_out``: never seen in training."""

    name: str
    method: str
    eps: float | None
    against: str
    held_out: bool
    make: Callable[[str | None], Attack] = field(repr=False, compare=False)
    targets: str | tuple[str, ...] | None = None
    patches: int | None = None
    stored: JpegChoice = JpegChoice()


@dataclass
class Crafted:
    """A setting's attacked patches (as stored), the clean ones they came from and the
    attack's verdict on each (reached its goal on the uint8 output, after its JPEG too)."""

    setting: Setting
    clean: np.ndarray
    attacked: np.ndarray
    success: np.ndarray


def plan_settings(
    runs: Sequence[AttackRunConfig],
    against: Sequence[str],
    sizes: Mapping[str, int],
    held_out: bool,
    gradient_free: Sequence[str] = (),
) -> list[Setting]:
    """Each run of ``runs`` at each of its epsilons against each detector of ``against``
    (the run's own ``detectors`` if it lists them) that it can attack."""
    plan = plan_attacks(AttacksConfig(runs=tuple(runs)), sizes, gradient_free)
    out = []
    for spec in plan.runs:
        for eps in spec.eps or (None,):
            for name in against:
                if spec.attacks(name):
                    out.append(_setting(spec, eps, name, held_out))
    return out


def setting_name(method: str, eps: float | None, params: Mapping[str, object]) -> str:
    """``pgd eps 4 (steps 10)``: the method, its epsilon and its other parameters."""
    name = method if eps is None else f"{method} eps {eps:g}"
    extra = ", ".join(f"{k} {v}" for k, v in sorted(params.items()))
    return f"{name} ({extra})" if extra else name


def _setting(spec: RunSpec, eps: Epsilon | None, against: str, held_out: bool) -> Setting:
    def make(model: str | None) -> Attack:
        return spec.build(eps, model, _camera, BATCH)

    value = None if eps is None else eps.value
    return Setting(
        setting_name(spec.method, value, spec.params),
        spec.method,
        None if eps is None else eps.pixels,
        against,
        held_out,
        make,
        spec.targets,
        spec.patches,
        spec.jpeg,
    )


def _camera(model: str) -> Jpeg:
    """The JPEG setting of SimCam camera ``model`` (its own tables)."""
    known = camera_tables()
    if model not in known:
        raise CamtraceError(
            f"spoof_detection: no JPEG tables known for {model}; params.jpeg camera needs "
            "targets among SimCam's models"
        )
    return known[model]


def generator_settings(paths: Mapping[str, Mapping[str, str]], against: str) -> list[Setting]:
    """The trained generators (method -> target -> checkpoint) as held-out settings, judged
    by ``against`` (a detector they were trained against)."""
    return [
        Setting(
            f"{method} -> {target}",
            method,
            None,
            against,
            True,
            lambda _, m=method, p=path: make_attack(m, generator=p, batch_size=BATCH),
        )
        for method, by_target in paths.items()
        for target, path in by_target.items()
    ]


def draw(store: PatchStore, split: str, n: int, seed: int) -> np.ndarray:
    """``n`` patch indices of ``split`` drawn at random (seeded), in a random order."""
    idx = store.indices(split)
    if len(idx) < n:
        raise CamtraceError(
            f"spoof_detection: {split} has {len(idx)} patches, fewer than the {n} asked; lower "
            f"the section's {split}_patches"
        )
    return np.random.default_rng(seed).choice(idx, n, replace=False)


def read(store: PatchStore, idx: np.ndarray) -> np.ndarray:
    """The patches of ``idx`` in that order (read in store order)."""
    order = np.argsort(idx)
    out = np.empty((len(idx), *store.patches(idx[:1]).shape[1:]), np.uint8)
    out[order] = store.patches(idx[order])
    return out


def resaved(patches: np.ndarray, qualities: np.ndarray) -> np.ndarray:
    """Each patch re-saved as JPEG at its own quality (libjpeg, as :mod:`camtrace.data.codec`
    writes). A patch on the image's 8x8 (and 16x16 chroma) block grid compresses as it would
    inside the whole image, whose blocks JPEG codes independently."""
    out = np.empty_like(patches)
    for q in np.unique(qualities):
        chosen = qualities == q
        out[chosen] = recompress(patches[chosen], Jpeg(quality=int(q)))
    return out


def craft(setting: Setting, detector: Detector, patches: np.ndarray, labels: np.ndarray) -> Crafted:
    """Attack ``patches`` (true ``labels`` in the detector's class order) with ``setting``
    and store each output as the setting does (its JPEG, e.g. the target camera's tables)."""
    classes = list(detector.classes)
    target = np.full(len(patches), -1)
    if setting.targets is not None:
        wanted = range(len(classes)) if setting.targets == "all" else setting.targets
        unknown = sorted({t for t in wanted if isinstance(t, str)} - set(classes))
        if unknown:
            raise CamtraceError(
                f"spoof_detection: targets {unknown} are not classes of {setting.against}"
            )
        target = assign_targets(
            labels, [classes.index(t) if isinstance(t, str) else t for t in wanted]
        )
        keep = target >= 0  # a patch of the only target model has nothing to be pushed to
        patches, target = patches[keep], target[keep]
    attacked, success = np.empty_like(patches), np.zeros(len(patches), bool)
    groups = np.unique(target) if setting.stored.camera else [None]  # one attack per camera
    for t in groups:
        rows = np.flatnonzero(target == t) if t is not None else np.arange(len(patches))
        model = None if t is None or t < 0 else classes[t]  # untargeted: -1
        aim = None if setting.targets is None else torch.as_tensor(target[rows])
        out, info = setting.make(model)(detector, patches[rows], target=aim)
        jpeg = setting.stored.settings(model, _camera)
        attacked[rows] = out if jpeg is None else recompress(out, jpeg)
        success[rows] = info.success.numpy().astype(bool)
    return Crafted(setting, patches, attacked, success)


def craft_in_turn(
    settings: Sequence[Setting],
    detectors: Mapping[str, Detector],
    patches: np.ndarray,
    labels: Mapping[str, np.ndarray],
    progress: Progress,
) -> np.ndarray:
    """The (i mod S)-th of the S ``settings`` attacks patch i (the training positives, by
    setting); ``labels`` are the patches' true classes in each detector's class order."""
    task = progress.add_task("spoof detection: training positives", total=len(settings))
    out = []
    for k, setting in enumerate(settings):
        rows = np.arange(k, len(patches), len(settings))
        det = detectors[setting.against]
        out.append(craft(setting, det, patches[rows], labels[setting.against][rows]).attacked)
        progress.advance(task)
    return np.concatenate(out)
