"""A detector's open-set calibration, measured on a patch store (``camtrace calibrate``).

The training cloud of the Mahalanobis score comes from ``cloud_images`` training images per
model; every score's threshold is the one that rejects at most ``frr`` of the validation
split's known images (:func:`camtrace.models.openset.threshold_at_frr`). The images are
scored from the store's patches exactly as :func:`camtrace.models.inference.identify` scores
a photo: the protocol's K voting patches, the majority vote, the scores of
:mod:`camtrace.models.openset`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.progress import Progress

from camtrace.data.patch_store import PatchStore
from camtrace.errors import CamtraceError
from camtrace.models.checkpoint import load_detector
from camtrace.models.inference import (
    embed_patches,
    majority_vote,
    patch_evidence,
    patch_protocol,
)
from camtrace.models.openset import (
    DEFAULT_FRR,
    DEFAULT_SCORE,
    ClassCloud,
    OpenSet,
    PatchEvidence,
    fit_cloud,
    image_scores,
    threshold_at_frr,
)
from camtrace.models.zoo import resolve_checkpoint, sha256_of

if TYPE_CHECKING:
    from camtrace.models.base import Detector

IMAGES_PER_BATCH = 32  # images whose patches go through the detector at once


@dataclass(frozen=True)
class ScoredImages:
    """Per image of a store (in store order): its true model, the detector's closed-set
    answer and every open-set score."""

    image: np.ndarray  # the store's image ids
    model: np.ndarray  # true camera model
    nearest: np.ndarray  # the vote's winner
    scores: dict[str, np.ndarray]

    @property
    def correct(self) -> np.ndarray:
        return self.model == self.nearest


def images_of(store: PatchStore, indices: np.ndarray) -> list[np.ndarray]:
    """``indices`` (patch rows) grouped by their source image, in order of first row."""
    image = np.asarray(store.meta["image"])[indices]
    ids, first = np.unique(image, return_index=True)
    return [indices[image == i] for i in ids[np.argsort(first)]]


@contextmanager
def _bar(progress: bool, what: str, total: int) -> Iterator:
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def score_images(
    detector: Detector,
    store: PatchStore,
    indices: np.ndarray,
    cloud: ClassCloud | None,
    progress: bool = False,
) -> ScoredImages:
    """Every open-set score of each image of ``indices``, from its patches in the store."""
    groups = images_of(store, indices)
    meta_image, meta_model = np.asarray(store.meta["image"]), np.asarray(store.meta["model"])
    nearest, scores = [], []
    with _bar(progress, "open-set scores", len(groups)) as advance:
        for start in range(0, len(groups), IMAGES_PER_BATCH):
            chunk = groups[start : start + IMAGES_PER_BATCH]
            evidence = patch_evidence(detector, store.patches(np.concatenate(chunk)))
            offset = 0
            for rows in chunk:
                one = _slice(evidence, offset, offset + len(rows))
                offset += len(rows)
                _, winner, _ = majority_vote(one.votes)
                nearest.append(detector.classes[winner])
                scores.append(image_scores(one, winner, cloud))
            advance(len(chunk))
    names = scores[0].keys() if scores else ()
    return ScoredImages(
        meta_image[[g[0] for g in groups]],
        meta_model[[g[0] for g in groups]],
        np.asarray(nearest),
        {name: np.array([s[name] for s in scores]) for name in names},
    )


def _slice(evidence: PatchEvidence, start: int, stop: int) -> PatchEvidence:
    margins = evidence.margins
    return PatchEvidence(
        evidence.votes[start:stop],
        evidence.logits[start:stop],
        evidence.embeddings[start:stop],
        None if margins is None else margins[start:stop],
        evidence.pairs,
    )


def training_cloud(
    detector: Detector,
    store: PatchStore,
    images_per_model: int,
    seed: int = 0,
    progress: bool = False,
) -> tuple[ClassCloud, int]:
    """The Mahalanobis cloud from up to ``images_per_model`` training images of each known
    model, drawn with ``seed``: each image's mean patch embedding. Returns it and the number
    of images used."""
    rng = np.random.default_rng(seed)
    chosen, labels = [], []
    for c, model in enumerate(detector.classes):
        groups = images_of(store, store.indices("train", [model]))
        if not groups:
            raise CamtraceError(
                f"{store.path}: no training images of {model} for the open-set cloud; "
                "calibrate on the store the detector was trained on"
            )
        picked = rng.choice(len(groups), min(images_per_model, len(groups)), replace=False)
        chosen += [groups[i] for i in np.sort(picked)]
        labels += [c] * len(picked)
    embeddings = []
    with _bar(progress, "open-set cloud", len(chosen)) as advance:
        for start in range(0, len(chosen), IMAGES_PER_BATCH):
            chunk = chosen[start : start + IMAGES_PER_BATCH]
            e = embed_patches(detector, store.patches(np.concatenate(chunk)))
            bounds = np.cumsum([len(g) for g in chunk])[:-1]
            embeddings += [part.mean(0) for part in np.split(e, bounds)]
            advance(len(chunk))
    cloud = fit_cloud(np.stack(embeddings), np.asarray(labels), detector.num_classes)
    return cloud, len(chosen)


def calibrate_openset(
    checkpoint: str | Path,
    store: PatchStore,
    frr: float = DEFAULT_FRR,
    cloud_images: int = 40,
    seed: int = 0,
    progress: bool = False,
) -> OpenSet:
    """The open-set calibration of ``checkpoint`` (a file or a pretrained name) on ``store``:
    the cloud from its training split, every score's threshold at ``frr`` on its validation
    split, deciding with :data:`~camtrace.models.openset.DEFAULT_SCORE`."""
    path = resolve_checkpoint(checkpoint)
    detector = load_detector(path)
    protocol, theirs = patch_protocol(detector), store.protocol
    if (theirs.name, theirs.size, theirs.count) != (protocol.name, protocol.size, protocol.count):
        raise CamtraceError(
            f"{store.path}: patches cut by {theirs.name} at {theirs.size} px, {theirs.count} "
            f"an image; {path.name} votes with {protocol.name} at {protocol.size} px, "
            f"{protocol.count} an image: cut a store with its protocol (camtrace patches)"
        )
    missing = sorted(set(detector.classes) - set(store.classes))
    if missing:
        raise CamtraceError(
            f"{store.path}: no patches of {', '.join(missing)}; calibrate on a store of the "
            "detector's own camera models"
        )
    if "val" not in set(np.asarray(store.meta.images["split"]).tolist()):
        raise CamtraceError(
            f"{store.path}: no validation split to choose the thresholds on; split the "
            "manifest with a val split (camtrace split) and cut the store again"
        )
    val = store.indices("val", detector.classes)
    cloud, used = training_cloud(detector, store, cloud_images, seed, progress)
    known = score_images(detector, store, val, cloud, progress)
    thresholds = {name: threshold_at_frr(s, frr) for name, s in known.scores.items()}
    return OpenSet(
        checkpoint_sha256=sha256_of(path),
        classes=tuple(detector.classes),
        patches=int(protocol.count),
        frr=frr,
        score=DEFAULT_SCORE,
        thresholds=thresholds,
        cloud=cloud,
        data={
            "store": str(store.path),
            "cloud": {"split": "train", "images": used, "seed": seed},
            "thresholds": {"split": "val", "images": len(known.image)},
        },
    )
