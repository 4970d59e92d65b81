"""Fit Bondi 2017's linear one-vs-one SVM battery on frozen CNN features (Sec. II, III-B).

C is chosen to maximise validation patch accuracy, as in the paper. The same function
fits SVMs for camera models the CNN never saw (Bondi III-B): only the SVMs are trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from camtrace.models.svm import OvOLinearSVM

DEFAULT_CS = (0.001, 0.01, 0.1, 1.0, 10.0)


@dataclass
class SVMFit:
    svm: OvOLinearSVM
    C: float
    val_accuracy: dict[float, float]


def fit_svm(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    num_classes: int,
    Cs: Sequence[float] = DEFAULT_CS,
    seed: int = 0,
) -> SVMFit:
    """Fit one battery per C and keep the one with the best validation patch accuracy."""
    import torch

    scores: dict[float, float] = {}
    best, best_C, best_acc = None, 0.0, -1.0
    vf = torch.as_tensor(val_features)
    for C in Cs:
        svm = OvOLinearSVM.fit(train_features, train_labels, num_classes, C=C, seed=seed)
        scores[float(C)] = acc = float((svm.predict(vf).numpy() == val_labels).mean())
        if acc > best_acc:
            best, best_C, best_acc = svm, float(C), acc
    return SVMFit(best, best_C, scores)
