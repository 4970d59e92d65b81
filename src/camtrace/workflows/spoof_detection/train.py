"""The spoof detector's candidates, trained on the same patches: SpoofNet with each residual
layer (the training engine: best validation loss kept) and the residual-feature + linear
model of the steganalysis view (Liu et al., CVPR 2019: SPAM features and a linear
classifier; here Marra 2017's SPAM features and a linear SVM, C chosen on validation)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from camtrace.models.base import Detector
from camtrace.models.checkpoint import load_detector, save_detector
from camtrace.models.inference import embed_patches
from camtrace.models.registry import build
from camtrace.models.spoofnet import RESIDUALS, SPOOF_CLASSES
from camtrace.training.config import TrainConfig
from camtrace.training.engine import BEST_FILE, PatchSet, train
from camtrace.training.svm import fit_svm

LINEAR = "spam-svm"
"""The residual-feature + linear candidate's name."""
LINEAR_ARCH = "marra2017"  # Marra 2017's SPAM features, a hand-crafted architecture


def candidate_name(residual: str) -> str:
    """SpoofNet's name in a run: ``spoofnet`` with the default residual layer, else
    ``spoofnet-<residual>``."""
    return "spoofnet" if residual == RESIDUALS[0] else f"spoofnet-{residual}"


@dataclass
class Candidate:
    """A trained spoof detector of a run: its checkpoint and how it was trained."""

    name: str
    detector: Detector
    checkpoint: Path
    training: dict[str, Any]


def train_spoofnet(
    residual: str,
    train_set: PatchSet,
    val_set: PatchSet,
    config: TrainConfig,
    out_dir: Path,
    card: dict[str, Any],
    progress: bool,
) -> Candidate:
    """SpoofNet with ``residual`` trained from scratch (seeded) on ``train_set``, the epoch of
    the best validation loss kept; written with its card to ``out_dir/<name>.safetensors``."""
    name = candidate_name(residual)
    torch.manual_seed(config.seed)
    detector = build(
        "spoofnet", list(SPOOF_CLASSES), int(train_set.patches.shape[1]), residual=residual
    )
    started = time.perf_counter()
    result = train(
        detector,
        train_set,
        val_set,
        config,
        out_dir / name,
        resume=False,
        progress=progress,
        card=card,
    )
    seconds = time.perf_counter() - started
    best = load_detector(out_dir / name / BEST_FILE)
    path = save_detector(best, out_dir / f"{name}.safetensors")
    training = {
        "seconds": round(seconds, 1),
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "val_accuracy": result.history[result.best_epoch - 1]["val_acc"],
        "parameters": sum(p.numel() for p in best.parameters()),
    }
    return Candidate(name, load_detector(path), path, training)


def fit_linear(
    train_set: PatchSet, val_set: PatchSet, out_dir: Path, card: dict[str, Any], seed: int
) -> Candidate:
    """SPAM features standardised on the training patches and a linear SVM, C chosen on the
    validation patches' accuracy (Bondi's SVM fit, one pair of classes)."""
    started = time.perf_counter()
    detector = build(LINEAR_ARCH, list(SPOOF_CLASSES), int(train_set.patches.shape[1]))
    detector.fit_preprocessing(train_set.patches)
    fit = fit_svm(
        embed_patches(detector, train_set.patches),
        train_set.labels.numpy(),
        embed_patches(detector, val_set.patches),
        val_set.labels.numpy(),
        len(SPOOF_CLASSES),
        seed=seed,
    )
    detector.svm = fit.svm
    seconds = time.perf_counter() - started
    svm = {"C": fit.C, "val_patch_accuracy": {str(k): v for k, v in fit.val_accuracy.items()}}
    training = {"fitted": "SVM on SPAM features", "precision": "fp32", "seed": seed}
    path = save_detector(
        detector,
        out_dir / f"{LINEAR}.safetensors",
        **card,
        training=training,
        svm_fit=svm,
        svm_only=True,
    )
    summary = {
        "seconds": round(seconds, 1),
        "C": fit.C,
        "val_accuracy": fit.val_accuracy[fit.C],
        "parameters": int(detector.svm.coef.numel() + detector.svm.intercept.numel()),
    }
    return Candidate(LINEAR, load_detector(path), path, summary)
