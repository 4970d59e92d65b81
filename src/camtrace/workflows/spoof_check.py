"""Was this photo processed by a counter-forensic attack? (``camtrace detect-spoof``)

Two kinds of evidence, each a verdict and a sentence:

- the learned verdict: a spoof detector (``spoofnet``, trained by ``camtrace run
  spoof-detection``) on the patches a camera-model detector votes with (Bondi's protocol, the
  ones camtrace's whole-image spoof attacks), the photo called attacked when most of them
  look attacked, as identification takes the majority;
- consistency checks: the vote, EXIF Make/Model and the JPEG quantisation tables against the
  camera model the photo's traces are read as (:func:`camtrace.workflows.examine.examine`:
  SimCam's models' tables are known; a real camera's only from an original JPEG of it given
  as ``reference``), and the sensor's PRNU against enrolled device fingerprints
  (:func:`camtrace.workflows.prnu.files.prnu_match`): the fingerprint of a device of another
  model than the traces say is a spoof that left the source device's PRNU in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from camtrace.data.codec import Jpeg
from camtrace.data.images import load_rgb
from camtrace.data.patches import extract_patches
from camtrace.errors import CamtraceError
from camtrace.models.base import Detector
from camtrace.models.checkpoint import load_detector
from camtrace.models.fingerprint import Fingerprint
from camtrace.models.inference import patch_protocol, patch_scores
from camtrace.models.spoofnet import SPOOF_CLASSES
from camtrace.workflows.examine import Check, consistency_checks, examine
from camtrace.workflows.prnu.files import prnu_match

SPOOF_DETECTOR = "spoofnet"
"""The shipped spoof detector (``camtrace models``)."""
SPOOF_CONFIG = "spoof-detection"
"""The built-in config that trains it (``camtrace pretrain spoofnet`` runs it)."""
MAJORITY = 0.5  # a photo is called attacked when at least this share of its patches look so
ATTACKED = SPOOF_CLASSES.index("attacked")


def attacked_patches(detector: Detector, patches: np.ndarray) -> np.ndarray:
    """Which patches (N, H, W, 3) uint8 a spoof detector calls attacked: its class decision
    (the soft-max's arg-max, or its SVM's vote)."""
    if len(patches) == 0:
        return np.zeros(0, bool)
    return patch_scores(detector, patches).argmax(1) == ATTACKED


def load_spoof_detector(name: str | Path) -> Detector:
    """A spoof detector by checkpoint or name; a camera-model detector is refused in one line."""
    detector = load_detector(name)
    if tuple(detector.classes) != SPOOF_CLASSES:
        raise CamtraceError(
            f"{name}: a detector of {', '.join(detector.classes[:3])}..., not a spoof detector "
            f"({' / '.join(SPOOF_CLASSES)}); give {SPOOF_DETECTOR} or a checkpoint of camtrace "
            "run spoof-detection"
        )
    return detector


@dataclass(frozen=True)
class LearnedVerdict:
    """The spoof detector's answer on one photo: how many of its ``patches`` it calls
    attacked, and whether that is most of them."""

    detector: str
    flagged: int
    patches: int

    @property
    def share(self) -> float:
        return self.flagged / self.patches

    @property
    def attacked(self) -> bool:
        return self.share >= MAJORITY

    @property
    def sentence(self) -> str:
        count = f"{self.flagged} of the {self.patches} patches ({self.share:.0%})"
        if self.attacked:
            return (
                f"{count} look attacked to {self.detector}: the photo was probably processed by "
                "a counter-forensic attack."
            )
        return (
            f"{count} look attacked to {self.detector}, fewer than half: no sign of an attack "
            "it knows (it misses some: docs/spoof-detection.md)."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "attacked": self.attacked,
            "flagged": self.flagged,
            "patches": self.patches,
            "share": round(self.share, 4),
            "sentence": self.sentence,
        }


def learned_verdict(
    spoof_detector: Detector, image: str | Path | np.ndarray, name: str | None = None
) -> LearnedVerdict:
    """The spoof detector on the patches of ``image`` (a file or (H, W, 3) uint8) its patch
    protocol picks (Bondi's 32 best by default, those a camera-model detector votes with)."""
    protocol = patch_protocol(spoof_detector)
    rgb = image if isinstance(image, np.ndarray) else load_rgb(image, min_size=protocol.size)
    patches, _, _ = extract_patches(rgb, protocol, np.random.default_rng(0))
    flags = attacked_patches(spoof_detector, patches)
    card = getattr(spoof_detector, "card", {})
    label = name or card.get("pretrained", {}).get("name") or spoof_detector.arch
    return LearnedVerdict(label, int(flags.sum()), len(flags))


def prnu_check(
    image: np.ndarray,
    fingerprints: str | Path | Sequence[Fingerprint] | None,
    model: str,
    classes: Sequence[str],
) -> Check:
    """The photo's sensor noise against enrolled device fingerprints (a file, a folder of
    them, or loaded ones; PCE, Goljan 2009), compared with the camera model its traces are
    read as (``model``). A device's model is
    its name without the trailing ``_<instance>`` (Dresden's and SimCam's ``Model_instance``)
    when that is one of ``classes``."""
    if fingerprints is None:
        return Check(
            "PRNU",
            "info",
            "No device fingerprints given (--fingerprints DIR): the sensor noise is not checked.",
        )
    result = prnu_match(image, fingerprints)
    best, threshold = result.matches[0], result.threshold
    pce = f"PCE {best.pce:.0f}"
    if not best.matched:
        return Check(
            "PRNU",
            "info",
            f"No enrolled device's fingerprint matches ({pce} at most, {best.device}; a match "
            f"needs {threshold:g}): another device shot it, or its sensor noise was removed.",
        )
    owner = best.device.rpartition("_")[0]
    if owner not in classes:
        return Check(
            "PRNU",
            "info",
            f"The sensor noise matches {best.device}'s fingerprint ({pce} >= {threshold:g}); "
            f"its camera model is not known here, so it is not compared with {model}.",
        )
    if owner == model:
        return Check(
            "PRNU",
            "pass",
            f"The sensor noise matches {best.device}'s fingerprint ({pce} >= {threshold:g}), "
            f"a {model} device, as the camera-model traces say.",
        )
    return Check(
        "PRNU disagrees",
        "warn",
        f"The sensor noise is {best.device}'s ({pce} >= {threshold:g}), a {owner} device, but "
        f"the camera-model traces say {model}: they were spoofed (or misread), the source "
        "device's fingerprint left in place.",
    )


@dataclass
class SpoofReport:
    """What :func:`detect_spoof` found: the camera model the traces are read as, the learned
    verdict and the consistency checks."""

    image: str
    model: str
    vote_share: float
    learned: LearnedVerdict
    checks: list[Check]

    @property
    def suspicious(self) -> bool:
        """The learned verdict says attacked, or a consistency check warns."""
        return self.learned.attacked or any(c.status == "warn" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "model": self.model,
            "vote_share": round(self.vote_share, 4),
            "suspicious": self.suspicious,
            "learned": self.learned.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
        }


def detect_spoof(
    image: str | Path,
    *,
    detector: str | Path = "bondi2017",
    spoof_detector: str | Path = SPOOF_DETECTOR,
    fingerprints: str | Path | None = None,
    reference: str | Path | None = None,
) -> SpoofReport:
    """Was ``image`` processed by a counter-forensic attack? The learned verdict of
    ``spoof_detector`` and the consistency checks against the camera model ``detector``
    reads (the module docstring). ``fingerprints``: a PRNU fingerprint file or a folder of
    them (camtrace prnu enroll); ``reference``: an original JPEG of the camera model the photo
    is read as, whose quantisation tables stand for that model's (camtrace knows SimCam's)."""
    rgb = load_rgb(image)
    tables = None if reference is None else Jpeg.from_file(reference).qtables
    spoofer = load_spoof_detector(spoof_detector)
    camera = load_detector(detector)
    if tuple(camera.classes) == SPOOF_CLASSES:
        raise CamtraceError(
            f"{detector}: a spoof detector; --detector takes a camera-model detector "
            "(camtrace models), --spoof-detector this one"
        )
    exam = examine(camera, image, blocks=False)
    checks = exam.checks
    if tables is not None and exam.jpeg is not None:
        same = tables == Jpeg.from_file(image).qtables
        checks = consistency_checks(
            exam.identification, exam.exif, replace(exam.jpeg, match=same), exam.format
        )
    ident = exam.identification
    checks = [*checks, prnu_check(rgb, fingerprints, ident.model, list(camera.classes))]
    return SpoofReport(
        str(image),
        ident.model,
        ident.vote_share,
        learned_verdict(spoofer, rgb, Path(spoof_detector).stem),
        checks,
    )
