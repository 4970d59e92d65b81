"""Whole-image attacks: attack every patch a detector votes with, stitch, write a real file.

``attack_image`` finds the patches ``identify`` votes with (the protocol of the checkpoint
card: Bondi's top-K 64x64 grid blocks by quality, Guera's random 32x32 grid cells, every
256x256 block for the GAN papers), attacks them in batches, pastes them back and checks the
image the way it will be stored (uint8, and JPEG-decoded when writing JPEG: the codec's
``stored``). ``attack_file`` also writes the file (the codec's ``save_image``) and identifies
the file read back, which is the only success that counts (docs/architecture.md: success on
the stored uint8 image).

A generative attack (MISLGAN, Adv-Cam-Id, GAP, SpoC) goes through the same workflow, deployed
as Chen et al. 2019 Sec. 3.4: the full-size image through the generator tile by tile, each
tile with the generator's receptive-field border so the stitched result is one pass over the
whole image (no seam along the tiles); every block of the detector's patch grid is then taken
from it (not only the voters), since a generator costs one forward pass a patch and leaves no
block with the source camera's traces. Each block is judged by the detector at its own size
(MISLnet's fixed-size classifier cannot score a whole image), by the same rules as any
attack's output (:class:`camtrace.attacks.replay.Replay`). The target defaults to the
generator's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from camtrace.attacks import make_attack
from camtrace.attacks.base import Attack, AttackInfo
from camtrace.attacks.generative import GenerativeAttack
from camtrace.attacks.generative.checkpoint import check_classes
from camtrace.attacks.replay import Replay
from camtrace.data.codec import Jpeg, as_jpeg, output_jpeg, save_image, stored
from camtrace.data.images import load_rgb
from camtrace.data.patches import grid_positions
from camtrace.errors import CamtraceError
from camtrace.evaluation.metrics import psnr
from camtrace.models.base import Detector
from camtrace.models.inference import Identification, identify, patch_protocol
from camtrace.models.openset import detector_openset
from camtrace.workflows.config import AttackSettings


class VotingScores(nn.Module):
    """The per-patch scores ``identify`` votes with, as a differentiable module for attacks.

    Without an SVM these are the detector's logits. With Bondi's one-vs-one SVM battery the
    vote counts are piecewise constant, so the forward value is the battery's exact output
    (its arg-max is the patch's vote) while the gradient is that of each class's summed
    one-vs-one margins (a straight-through estimator): attacks and early stopping then aim at
    the label ``identify`` really uses, not at the CNN head that the SVMs replaced.
    """

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector
        self.classes = detector.classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        svm = getattr(self.detector, "svm", None)
        if svm is None:
            return self.detector(x)
        features = self.detector.embed(x).float()
        margin = features @ svm.coef.T + svm.intercept
        surrogate = torch.zeros(len(x), svm.num_classes, device=x.device, dtype=margin.dtype)
        surrogate = surrogate.index_add(1, svm.pairs[:, 0], margin).index_add(
            1, svm.pairs[:, 1], -margin
        )
        return surrogate + (svm(features) - surrogate).detach()


@dataclass
class WholeImageResult:
    """Outcome of a whole-image attack.

    ``before``/``after`` are ``identify`` on the clean image and on the adversarial image as
    stored (after ``attack_file``: the file read back from disk). ``attack`` summarises every
    patch attack of every round (success there is per patch, on uint8 and after JPEG when
    writing JPEG); ``psnr``/``linf`` compare the returned uint8 image with the clean one.
    """

    path: str
    target: str | None
    before: Identification
    after: Identification
    rounds: int
    attacked: int
    attack: dict[str, float]
    psnr: float
    linf: int
    saved: str | None = None
    per_round: list[int] = field(default_factory=list)
    open_set: str | None = None  # the stored file's verdict with the detector's open set on

    @property
    def success(self) -> bool:
        """The stored image is identified as the target (untargeted: as anything else)."""
        if self.target is None:
            return self.after.model != self.before.model
        return self.after.model == self.target

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (PSNR of an unchanged image, infinite, is null)."""
        return {
            "path": self.path,
            "saved": self.saved,
            "target": self.target,
            "success": self.success,
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "rounds": self.rounds,
            "patches_attacked": self.attacked,
            "patches_attacked_per_round": self.per_round,
            "attack": self.attack,
            "psnr": self.psnr if math.isfinite(self.psnr) else None,
            "linf": self.linf,
            "open_set": self.open_set,
        }


def attack_image(
    detector: Detector,
    image: str | Path | np.ndarray,
    attack: Attack | str = "pgd",
    target: int | str | None = None,
    *,
    jpeg: int | Jpeg | None = None,
    rounds: int = 3,
    progress: bool = False,
    on_round: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, WholeImageResult]:
    """Attack the patches ``detector`` votes with on ``image`` (path or (H, W, 3) uint8).

    ``target``: class index or name (None: untargeted, away from the clean verdict).
    ``jpeg``: the image will be stored as this JPEG; the attack then counts a patch as done
    only once it survives that compression, and every check decodes the image as stored.

    Which patches: where the voting positions depend on content (Bondi's top-K by quality:
    a perturbation can saturate a block and drop it, and promote an unattacked one), the
    image is re-identified after each round exactly as ``identify`` does, on the pixels as
    stored, and voting patches that do not vote for the goal yet are attacked, for at most
    ``rounds`` rounds, stopping as soon as the verdict is reached. This keeps the cost at
    the K voters instead of every grid block. Every attack starts from the clean patch, so
    each patch stays within the attack's budget; a patch already attacked is attacked again
    only by an attack with a fresh random start (PGD without a seed: a new try, also for a
    patch that passed alone but fails inside the stored JPEG), since a deterministic attack
    would return the same pixels. A generative attack spoofs every grid block in the first
    round (so it needs no second), toward its generator's target unless ``target`` repeats it.
    ``on_round(done, rounds)`` is told each finished round (a page's progress bar).
    """
    if rounds < 1:
        raise CamtraceError(f"rounds={rounds} must be >= 1")
    clean, path = _read(detector, image)
    jpeg = as_jpeg(jpeg)
    attack = _configured(attack, jpeg, progress)
    target = _generator_target(attack, detector, target)
    scorer = VotingScores(detector)
    before = identify(detector, clean)
    goal = _goal(detector, target, before)
    size = patch_protocol(detector).size
    adv, attacked, per_round, infos = clean.copy(), set(), [], []
    after = before
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("whole-image attack", total=rounds)
        for _ in range(rounds):
            after = identify(detector, stored(adv, jpeg))
            todo = _to_attack(goal.failing(after), attacked, _randomised(attack))
            if goal.reached(after) or len(todo) == 0:
                break
            patch_attack: Attack = attack
            if isinstance(attack, GenerativeAttack):  # Chen Sec. 3.4: every block, once
                todo = grid_positions(clean.shape[0], clean.shape[1], size)
                whole = attack.spoof_image(clean)  # tiles with the generator's halo: no seam
                patch_attack = Replay(_cut(whole, todo, size), attack.options)
            out, info = _attack_patches(scorer, patch_attack, _cut(clean, todo, size), goal)
            _paste(adv, out, todo, size)
            attacked.update(map(tuple, todo.tolist()))
            per_round.append(len(todo))
            infos.append(info)
            bar.advance(task)
            if on_round is not None:
                on_round(len(per_round), rounds)
        else:
            after = identify(detector, stored(adv, jpeg))
    result = WholeImageResult(
        path=path,
        target=None if goal.leave else goal.name,
        before=before,
        after=after,
        rounds=len(per_round),
        attacked=len(attacked),
        attack=AttackInfo.cat(infos).summary() if infos else {},
        psnr=psnr(clean, adv),
        linf=int(np.abs(adv.astype(np.int16) - clean).max()),
        per_round=per_round,
    )
    return adv, result


def attack_file(
    detector: Detector,
    image: str | Path | np.ndarray,
    out: str | Path,
    attack: Attack | str = "pgd",
    target: int | str | None = None,
    *,
    jpeg: int | Jpeg | None = None,
    rounds: int = 3,
    progress: bool = False,
    on_round: Callable[[int, int], None] | None = None,
) -> WholeImageResult:
    """``attack_image``, then ``save_image`` to ``out`` (.png, or .jpg with ``jpeg`` or
    quality 95), then ``identify`` on the file read back: ``result.after`` and
    ``result.success`` are those of the real file (the vote, closed set: the attack's goal),
    ``result.open_set`` its verdict with the detector's open-set calibration, as ``camtrace
    identify`` answers by default (None without one)."""
    jpeg = output_jpeg(out, jpeg)
    adv, result = attack_image(
        detector,
        image,
        attack,
        target,
        jpeg=jpeg,
        rounds=rounds,
        progress=progress,
        on_round=on_round,
    )
    saved = save_image(out, adv, jpeg)
    result.after = identify(detector, saved)
    result.saved = str(saved)
    calibration = detector_openset(detector)
    if not isinstance(calibration, str):
        result.open_set = identify(detector, saved, openset=calibration).model
    return result


def _read(detector: Detector, image: str | Path | np.ndarray) -> tuple[np.ndarray, str]:
    """The clean (H, W, 3) uint8 image and its name; refuses images smaller than a patch."""
    size = patch_protocol(detector).size
    if not isinstance(image, np.ndarray):
        return load_rgb(image, min_size=size), str(image)
    _check_array(image, "image")
    if min(image.shape[:2]) < size:
        raise CamtraceError(
            f"image: array is {image.shape[1]}x{image.shape[0]}, smaller than the detector's "
            f"{size}x{size} patch; use a larger image"
        )
    return image, "<array>"


def _check_array(array: Any, what: str) -> None:
    if (
        not isinstance(array, np.ndarray)
        or array.dtype != np.uint8
        or array.ndim != 3
        or array.shape[2] != 3
    ):
        kind = f"{getattr(array, 'dtype', type(array).__name__)} {getattr(array, 'shape', '')}"
        raise CamtraceError(
            f"{what}: expected an (H, W, 3) uint8 array, got {kind}; round and clip to 0..255 first"
        )


def _generator_target(
    attack: Attack, detector: Detector, target: int | str | None
) -> int | str | None:
    """A generative attack's target: its generator's by default, checked first against the
    detector's classes (the generator's target index would mean another camera)."""
    card = getattr(attack, "card", None) if isinstance(attack, GenerativeAttack) else None
    if card is None:
        return target
    check_classes(card, detector.classes, f"{attack.name} generator")
    if isinstance(target, int) or target in detector.classes:  # another one is an error
        attack.target_for(
            detector, detector.classes.index(target) if isinstance(target, str) else target
        )
    return card["target"] if target is None else target


def _configured(attack: Attack | str, jpeg: Jpeg | None, progress: bool) -> Attack:
    """A copy of ``attack`` (or the named attack with its defaults) that counts a patch as
    done only after ``jpeg`` when the output is JPEG."""
    attack = make_attack(attack) if isinstance(attack, str) else attack
    if not isinstance(attack, Attack):
        raise CamtraceError(
            f"attack: expected an attack name or camtrace attack, got {type(attack).__name__}"
        )
    return attack.with_options(jpeg=jpeg or attack.options.jpeg, progress=progress)


@dataclass(frozen=True)
class _Goal:
    """The class to reach, or (``leave``) the clean verdict's class to move away from."""

    index: int
    name: str
    leave: bool

    def reached(self, ident: Identification) -> bool:
        return (ident.model != self.name) if self.leave else (ident.model == self.name)

    def failing(self, ident: Identification) -> np.ndarray:
        """Positions (M, 2) of the voting patches that do not vote for the goal yet."""
        labels = np.asarray(ident.patch_labels, dtype=object)
        bad = (labels == self.name) if self.leave else (labels != self.name)
        return ident.positions[bad.astype(bool)]


def _goal(detector: Detector, target: int | str | None, before: Identification) -> _Goal:
    """The target class by index or name; None leaves the clean verdict."""
    classes = detector.classes
    if target is None:
        return _Goal(classes.index(before.model), before.model, leave=True)
    if isinstance(target, str) and target in classes:
        return _Goal(classes.index(target), target, leave=False)
    if (
        isinstance(target, (int, np.integer))
        and not isinstance(target, bool)
        and 0 <= target < len(classes)
    ):
        return _Goal(int(target), classes[int(target)], leave=False)
    raise CamtraceError(
        f"target {target!r} is not a class of this detector; choose one of: {', '.join(classes)}"
    )


def _attack_patches(
    scorer: nn.Module, attack: Attack, patches: np.ndarray, goal: _Goal
) -> tuple[np.ndarray, AttackInfo]:
    """Attack clean (M, s, s, 3) uint8 ``patches`` toward (or away from) the goal class."""
    kwargs = {"labels": goal.index} if goal.leave else {"target": goal.index}
    return attack(scorer, patches, **kwargs)


def _randomised(attack: Attack) -> bool:
    """True when a second run of ``attack`` on the same patch can give other pixels."""
    return bool(getattr(attack, "random_start", False)) and attack.options.seed is None


def _to_attack(failing: np.ndarray, attacked: set[tuple[int, int]], randomised: bool) -> np.ndarray:
    """Failing voter positions worth attacking: all of them, or only the new ones."""
    if randomised:
        return failing
    new = [tuple(p) not in attacked for p in failing.tolist()]
    return failing[np.asarray(new, dtype=bool)]


def _cut(image: np.ndarray, positions: np.ndarray, size: int) -> np.ndarray:
    """The (M, size, size, 3) patches whose top-left corners are ``positions``."""
    return np.stack([image[y : y + size, x : x + size] for y, x in positions.tolist()])


def _paste(image: np.ndarray, patches: np.ndarray, positions: np.ndarray, size: int) -> None:
    """Write ``patches`` back at ``positions`` (in place; grid patches never overlap)."""
    for patch, (y, x) in zip(patches, positions.tolist()):
        image[y : y + size, x : x + size] = patch


def spoof(
    detector: Detector,
    image: str | Path | np.ndarray,
    out: str | Path,
    settings: AttackSettings | None = None,
    *,
    jpeg: int | Jpeg | None = None,
    progress: bool = False,
    on_round: Callable[[int, int], None] | None = None,
) -> WholeImageResult:
    """``image`` spoofed with the attack ``settings`` describe (default: PGD, untargeted) and
    written to ``out`` (.png, or .jpg with ``jpeg`` or quality 95): :func:`attack_file` with
    the attack built, seeded and pointed at the target the settings name."""
    settings = settings or AttackSettings()
    jpeg = output_jpeg(out, jpeg)
    torch.manual_seed(settings.seed)
    attack = settings.build(jpeg, progress)
    return attack_file(
        detector,
        image,
        out,
        attack,
        settings.target,
        jpeg=jpeg,
        rounds=settings.rounds,
        progress=progress,
        on_round=on_round,
    )
