"""Open-set identification: is the evidence one of the camera models a detector knows?

A closed-set detector names one of its models for any photo, a camera it never saw included.
Each score below reads an image's voting patches and is larger the more the evidence looks
like a known model's; the image is answered "unknown model" when the calibrated score falls
below a threshold chosen on known images for a stated false-rejection rate (FRR).

- ``msp``: the maximum soft-max probability (Hendrycks & Gimpel 2017), of the mean soft-max
  of the voting patches: ``max_c mean_k softmax(z_k)_c``.
- ``energy``: the negative free energy (Liu, Wang, Owens & Li 2020, Eq. 5 at T = 1), mean over
  the patches: ``mean_k logsumexp(z_k)``.
- ``vote``: the winner's share of the patch votes (Bondi et al. 2017's majority vote).
- ``margin``: Bondi's one-vs-one linear SVMs, where the detector has them: per patch the
  smallest decision value of the winner's C - 1 pairwise SVMs, signed toward the winner,
  mean over the patches.
- ``mahalanobis``: the embedding's distance to each model's training cloud (Lee, Lee, Lee &
  Shin 2018, Eq. 2): ``-min_c d_M(e, mu_c)``, ``e`` the mean embedding of the voting patches,
  ``mu_c`` model c's mean over its training images' ``e``, one covariance shared by the
  models (Ledoit & Wolf 2004's shrinkage: a few hundred images barely fix 400 dimensions).

The threshold is the ``floor(alpha n) + 1``-th smallest score of the ``n`` known validation
images, so at most a fraction ``alpha`` of them falls below it (:func:`threshold_at_frr`).
An :class:`OpenSet` holds a detector's calibration and is saved beside its checkpoint as a
sidecar ``<checkpoint>.openset.safetensors`` (:func:`sidecar_path`) that names the
checkpoint's sha256, so a retrained checkpoint never uses a stale calibration.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.spatial.distance import cdist
from scipy.special import logsumexp, softmax

from camtrace.errors import CamtraceError
from camtrace.io import atomic_path
from camtrace.models.zoo import resolve_checkpoint, sha256_of

if TYPE_CHECKING:
    from camtrace.models.base import Detector

SCORES = ("msp", "energy", "vote", "margin", "mahalanobis")
DEFAULT_SCORE = (
    "mahalanobis"  # the best mean AUROC over the zoo on held-out models (docs/openset.md)
)
DEFAULT_FRR = 0.05
SIDECAR_SUFFIX = ".openset.safetensors"
META_KEY = "camtrace_openset"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PatchEvidence:
    """What a detector says of an image's voting patches (K of them): the per-patch class
    scores it votes with (SVM votes or soft-max), the network's logits, the pairwise SVM
    decision values and their class pairs (None without SVMs), and the embeddings."""

    votes: np.ndarray  # (K, C)
    logits: np.ndarray  # (K, C)
    embeddings: np.ndarray  # (K, D)
    margins: np.ndarray | None = None  # (K, P), pair p = (i, j) votes i when > 0
    pairs: np.ndarray | None = None  # (P, 2)


@dataclass(frozen=True)
class ClassCloud:
    """Each known model's mean image embedding and the shared precision (inverse
    covariance) of the training images around their model's mean, in float32 (what a
    sidecar stores, so a loaded calibration scores exactly as the fitted one)."""

    means: np.ndarray  # (C, D)
    precision: np.ndarray  # (D, D)


def fit_cloud(embeddings: np.ndarray, labels: np.ndarray, num_classes: int) -> ClassCloud:
    """The class means of (N, D) image embeddings and the Ledoit-Wolf shrunk precision of the
    class-centred embeddings (Lee et al. 2018's tied covariance)."""
    from sklearn.covariance import LedoitWolf

    missing = sorted(set(range(num_classes)) - set(np.unique(labels).tolist()))
    if missing:
        raise CamtraceError(f"open set: no training images of classes {missing} for the cloud")
    means = np.stack([embeddings[labels == c].mean(0) for c in range(num_classes)])
    shrunk = LedoitWolf().fit(embeddings - means[labels])
    return ClassCloud(means.astype(np.float32), shrunk.precision_.astype(np.float32))


def max_softmax(logits: np.ndarray) -> float:
    """``max_c mean_k softmax(z_k)_c`` (Hendrycks & Gimpel 2017 on the mean soft-max)."""
    return float(softmax(logits.astype(np.float64), axis=1).mean(0).max())


def energy(logits: np.ndarray) -> float:
    """``mean_k logsumexp(z_k)``, the negative free energy at T = 1 (Liu et al. 2020, Eq. 5)."""
    return float(logsumexp(logits.astype(np.float64), axis=1).mean())


def vote_share(votes: np.ndarray, winner: int) -> float:
    """The share of the patches whose arg-max is ``winner``."""
    return float((votes.argmax(1) == winner).mean())


def svm_margin(margins: np.ndarray, pairs: np.ndarray, winner: int) -> float:
    """Mean over the patches of the smallest decision value of ``winner``'s pairwise SVMs,
    each signed toward ``winner`` (positive: that SVM votes for it)."""
    mine = (pairs[:, 0] == winner) | (pairs[:, 1] == winner)
    sign = np.where(pairs[mine, 0] == winner, 1.0, -1.0)
    return float((margins[:, mine] * sign).min(1).mean())


def mahalanobis(embeddings: np.ndarray, cloud: ClassCloud) -> float:
    """``-min_c d_M(e, mu_c)`` of the patches' mean embedding ``e`` (Lee et al. 2018, Eq. 2)."""
    mean = embeddings.astype(np.float64).mean(0, keepdims=True)
    means, precision = cloud.means.astype(np.float64), cloud.precision.astype(np.float64)
    return -float(cdist(mean, means, "mahalanobis", VI=precision).min())


def image_scores(
    evidence: PatchEvidence, winner: int, cloud: ClassCloud | None
) -> dict[str, float]:
    """Every score that applies to the detector (``margin`` needs SVMs, ``mahalanobis`` a
    cloud), by name."""
    out = {
        "msp": max_softmax(evidence.logits),
        "energy": energy(evidence.logits),
        "vote": vote_share(evidence.votes, winner),
    }
    if evidence.margins is not None and evidence.pairs is not None:
        out["margin"] = svm_margin(evidence.margins, evidence.pairs, winner)
    if cloud is not None:
        out["mahalanobis"] = mahalanobis(evidence.embeddings, cloud)
    return out


def threshold_at_frr(scores: np.ndarray, frr: float) -> float:
    """The largest threshold that rejects (score < threshold) at most a fraction ``frr`` of
    ``scores``: their ``floor(frr n) + 1``-th smallest."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    if not len(scores):
        raise CamtraceError("open set: no known images to choose a threshold on")
    if not 0 <= frr < 1:
        raise CamtraceError(f"open set: the false-rejection rate {frr} is not in [0, 1)")
    return float(scores[int(np.floor(frr * len(scores)))])


@dataclass(frozen=True)
class OpenSetDecision:
    """One image's open-set answer: ``score`` of the evidence against its ``threshold``."""

    score: str
    value: float
    threshold: float
    frr: float
    known: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "value": round(self.value, 4),
            "threshold": round(self.threshold, 4),
            "frr": self.frr,
            "decision": "known" if self.known else "unknown",
        }


@dataclass(frozen=True)
class OpenSet:
    """A detector's open-set calibration: the score :meth:`decide` uses, every score's
    threshold at ``frr`` on the known validation images, the training cloud, and what it was
    measured on (``data``: the store, split and image counts; ``selection``: each score's
    AUROC on held-out camera models when the score was chosen by measurement)."""

    checkpoint_sha256: str
    classes: tuple[str, ...]
    patches: int  # voting patches per image the scores were calibrated at
    frr: float
    score: str
    thresholds: dict[str, float]
    cloud: ClassCloud | None = field(repr=False, default=None)
    data: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)

    def decide(self, evidence: PatchEvidence, winner: int) -> OpenSetDecision:
        """Known when the calibrated score of the evidence reaches its threshold."""
        value = image_scores(evidence, winner, self.cloud)[self.score]
        threshold = self.thresholds[self.score]
        return OpenSetDecision(self.score, value, threshold, self.frr, value >= threshold)

    def with_score(self, score: str) -> OpenSet:
        """The same calibration deciding with another of its scores."""
        if score not in self.thresholds:
            raise CamtraceError(
                f"open set: no {score!r} score in this calibration; it has "
                f"{', '.join(self.thresholds)}"
            )
        return replace(self, score=score)

    def to_meta(self) -> dict[str, Any]:
        meta = asdict(self)
        meta.pop("cloud")
        return {"format": FORMAT_VERSION, **meta}


def sidecar_path(checkpoint: str | Path) -> Path:
    """Where a checkpoint's calibration lives: ``<name>.openset.safetensors`` beside it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name.removesuffix(".safetensors") + SIDECAR_SUFFIX)


def save_openset(openset: OpenSet, path: str | Path) -> Path:
    """Write the calibration atomically: the cloud as tensors, the rest as JSON metadata."""
    from safetensors.numpy import save_file

    path = Path(path)
    tensors = {}
    if openset.cloud is not None:
        tensors = {
            "means": np.ascontiguousarray(openset.cloud.means),
            "precision": np.ascontiguousarray(openset.cloud.precision),
        }
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(openset.to_meta())})
    except OSError as e:
        raise CamtraceError(
            f"{path}: cannot write the calibration ({e.strerror or e}); make its folder "
            "writable or copy the checkpoint somewhere writable and calibrate that"
        ) from None
    return path


def load_openset(path: str | Path) -> OpenSet:
    """Read a calibration sidecar; an unreadable one is a one-line error naming the fix."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    fix = "recalibrate with 'camtrace calibrate CHECKPOINT --store STORE'"
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {})[META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, KeyError) as e:
        raise CamtraceError(f"{path}: not a camtrace open-set calibration ({e}); {fix}") from None
    if meta.pop("format", None) != FORMAT_VERSION:
        raise CamtraceError(f"{path}: an open-set calibration of another format; {fix}")
    cloud = ClassCloud(tensors["means"], tensors["precision"]) if "means" in tensors else None
    return OpenSet(**{**meta, "classes": tuple(meta["classes"]), "cloud": cloud})


def openset_for(checkpoint: str | Path, sha256: str) -> OpenSet | str:
    """The calibration beside ``checkpoint`` (whose file has ``sha256``), or one line saying
    why open set is unavailable for it."""
    path = sidecar_path(checkpoint)
    if not path.is_file():
        return (
            f"open set unavailable for {Path(checkpoint).name}: no calibration "
            f"({path.name}); 'camtrace calibrate' makes one; answering closed-set"
        )
    openset = load_openset(path)
    if openset.checkpoint_sha256 != sha256:
        return (
            f"open set unavailable for {Path(checkpoint).name}: {path.name} calibrates "
            "another version of the weights; recalibrate with 'camtrace calibrate'; "
            "answering closed-set"
        )
    return openset


def checkpoint_openset(checkpoint: str | Path) -> OpenSet | str:
    """The calibration of ``checkpoint`` (a file or a pretrained name) from its sidecar, or
    one line saying why open set is unavailable."""
    path = resolve_checkpoint(checkpoint)
    return openset_for(path, sha256_of(path))


def detector_openset(detector: Detector) -> OpenSet | str:
    """:func:`checkpoint_openset` of the file the detector was loaded from."""
    path = getattr(detector, "checkpoint", None)
    if path is None:
        return (
            f"open set unavailable for this {detector.arch}: not loaded from a checkpoint "
            "(camtrace.load_detector); answering closed-set"
        )
    return checkpoint_openset(path)
