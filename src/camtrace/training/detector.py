"""Train a detector from a patch store: the CNN, then (Bondi 2017) its SVM battery.

``train_detector`` is the ``camtrace train`` command: fit the input preprocessing on the
training patches, run the shared training loop, and for architectures whose paper
classifies with SVMs, fit the one-vs-one battery on the frozen features with C chosen on
validation; a hand-crafted detector (Marra 2017) gets the SVMs only. The result is one
checkpoint file with its card.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camtrace.data.patch_store import PatchStore
from camtrace.errors import CamtraceError
from camtrace.models.base import Detector
from camtrace.models.checkpoint import load_detector, save_detector
from camtrace.models.inference import embed_patches
from camtrace.models.registry import build
from camtrace.training.engine import Objective, PatchSet, TrainConfig, TrainResult, train
from camtrace.training.svm import DEFAULT_CS, fit_svm

DETECTOR_FILE = "detector.safetensors"


@dataclass
class TrainedDetector:
    detector: Detector
    checkpoint: Path
    result: TrainResult
    svm: dict[str, Any] | None


def patch_set(store: PatchStore, detector: Detector, split: str) -> PatchSet:
    """The ``split`` patches of ``store`` with labels in the detector's class order."""
    idx = store.indices(split, models=detector.classes)
    if len(idx) == 0:
        raise CamtraceError(
            f"{store.path}: no '{split}' patches; split the manifest before extracting patches"
        )
    return PatchSet(
        torch.from_numpy(store.patches(idx)), torch.from_numpy(store.labels(idx, detector.classes))
    )


def features_and_labels(
    detector: Detector, store: PatchStore, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """128-d (or D-d) features and labels of a split, for SVM fitting."""
    idx = store.indices(split, models=[m for m in detector.classes if m in store.classes])
    return embed_patches(detector, store.patches(idx)), store.labels(idx, detector.classes)


def store_card(store: PatchStore) -> dict[str, Any]:
    """What a checkpoint records about its training data."""
    info = json.loads((store.path / "store.json").read_text())
    p = store.protocol
    return {
        "patches": {"name": p.name, "size": p.size, "count": p.count},
        "data": {
            "patch_store": str(store.path),
            "manifest_digest": info["manifest_digest"],
            "seed": info["seed"],
        },
    }


def train_detector(
    store: PatchStore,
    arch: str,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    svm: bool | None = None,
    Cs: tuple[float, ...] = DEFAULT_CS,
    resume: bool = True,
    progress: bool = True,
    objective: Objective | None = None,
) -> TrainedDetector:
    """Train ``arch`` on the store's train split, select on val, write ``detector.safetensors``.

    ``objective``: the minibatch loss (default cross-entropy), e.g. a defence of
    :func:`camtrace.defenses.make_objective`; its ``card`` is recorded as the card's ``defense``.
    """
    config = config or TrainConfig()
    out_dir = Path(out_dir)
    classes = sorted(
        set(store.meta.images["model"][store.meta.images["split"] == "train"].tolist())
    )
    torch.manual_seed(config.seed)
    detector = build(arch, classes, patch_size=store.patch_size)
    train_set, val_set = patch_set(store, detector, "train"), patch_set(store, detector, "val")
    card = store_card(store)
    if detector.spec.handcrafted:
        if svm is False:
            raise CamtraceError(f"{arch} classifies with its SVMs only; drop --no-svm / svm: false")
        return fit_handcrafted(detector, store, train_set, out_dir, config, card, Cs)
    if config.init:
        start_from(detector, config.init)
    else:
        detector.fit_preprocessing(train_set.patches)
    result = train(
        detector,
        train_set,
        val_set,
        config,
        out_dir,
        resume=resume,
        progress=progress,
        card=card,
        objective=objective,
    )
    detector = load_detector(out_dir / "best.safetensors")
    svm_info = None
    if svm if svm is not None else detector.spec.svm:
        svm_info = attach_svm(detector, store, Cs=Cs, seed=config.seed)
    path = save_detector(detector, out_dir / DETECTOR_FILE, svm_fit=svm_info)
    return TrainedDetector(load_detector(path), path, result, svm_info)


def start_from(detector: Detector, init: str) -> None:
    """Fine-tuning: ``detector`` takes the network weights (and fitted preprocessing) of
    ``init``, a checkpoint or a pretrained name of the same architecture and classes."""
    start = load_detector(init)
    if start.arch != detector.arch or list(start.classes) != list(detector.classes):
        raise CamtraceError(
            f"train.init: {init} is a {start.arch} of {len(start.classes)} classes "
            f"({', '.join(start.classes)}); this training is a {detector.arch} of "
            f"{', '.join(detector.classes)}"
        )
    weights = {k: v for k, v in start.state_dict().items() if not k.startswith("svm.")}
    detector.load_state_dict(weights)


def fit_handcrafted(
    detector: Detector,
    store: PatchStore,
    train_set: PatchSet,
    out_dir: Path,
    config: TrainConfig,
    card: dict[str, Any],
    Cs: tuple[float, ...] = DEFAULT_CS,
) -> TrainedDetector:
    """A detector whose features are a fixed formula (Marra 2017): nothing to train by
    gradient, so its preprocessing and the SVM battery are the model."""
    start = time.perf_counter()
    detector.fit_preprocessing(train_set.patches)
    svm_info = attach_svm(detector, store, Cs=Cs, seed=config.seed)
    seconds = time.perf_counter() - start
    training = {
        "fitted": "SVMs only (hand-crafted features)",
        "precision": "fp32",
        "seed": config.seed,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = save_detector(
        detector,
        out_dir / DETECTOR_FILE,
        **card,
        training=training,
        svm_only=True,
        svm_fit=svm_info,
    )
    result = TrainResult(0, math.nan, [], path, len(train_set.patches) / max(seconds, 1e-9))
    return TrainedDetector(load_detector(path), path, result, svm_info)


def attach_svm(
    detector: Detector, store: PatchStore, Cs: tuple[float, ...] = DEFAULT_CS, seed: int = 0
) -> dict[str, Any]:
    """Fit the OvO SVM battery on frozen features (train split), C chosen on val."""
    xt, yt = features_and_labels(detector, store, "train")
    xv, yv = features_and_labels(detector, store, "val")
    fit = fit_svm(xt, yt, xv, yv, detector.num_classes, Cs=Cs, seed=seed)
    detector.svm = fit.svm
    return {"C": fit.C, "val_patch_accuracy": {str(k): v for k, v in fit.val_accuracy.items()}}


def refit_svm_for_new_models(
    detector: Detector,
    store: PatchStore,
    out: str | Path,
    Cs: tuple[float, ...] = DEFAULT_CS,
    seed: int = 0,
) -> Path:
    """Bondi 2017 Sec. III-B: keep the CNN frozen, fit SVMs only, on camera models it never saw.

    The new detector shares every weight of ``detector`` up to the features; its classes are
    the store's models and its labels come from the SVM battery alone.
    """
    classes = sorted(set(np.asarray(store.meta.images["model"]).tolist()))
    new = build(detector.arch, classes, patch_size=detector.patch_size, **detector.hparams)
    target = new.state_dict()
    # every weight whose shape does not depend on the number of classes is shared
    shared = {
        k: v for k, v in detector.state_dict().items() if k in target and target[k].shape == v.shape
    }
    new.load_state_dict(shared, strict=False)
    info = attach_svm(new, store, Cs=Cs, seed=seed)
    card = {
        **store_card(store),
        "features_from": getattr(detector, "card", {}).get("data", {}),
        "svm_only": True,
    }
    return save_detector(new, out, **card, svm_fit=info)
