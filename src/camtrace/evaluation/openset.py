"""Known-vs-unknown metrics of an open-set score (pure, on arrays).

Known images are the positives: a score is larger the more an image looks like a known
camera model. The ROC (scikit-learn's) plots the share of unknown images accepted (false
acceptance) against the share of known images accepted (1 - FRR); its area (AUROC) is the
probability that a known image scores above an unknown one. At a threshold (an operating
point), an image is accepted when its score reaches it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from camtrace.errors import CamtraceError


def _labelled(known: np.ndarray, unknown: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if not len(known) or not len(unknown):
        raise CamtraceError("open set: AUROC needs known and unknown images, one of each at least")
    y = np.r_[np.ones(len(known)), np.zeros(len(unknown))]
    return y, np.r_[np.asarray(known, np.float64), np.asarray(unknown, np.float64)]


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """Area under the known-vs-unknown ROC (ties count one half)."""
    return float(roc_auc_score(*_labelled(known, unknown)))


def roc(known: np.ndarray, unknown: np.ndarray) -> dict[str, list[float]]:
    """The ROC's corners: ``unknown_accepted`` (x) and ``known_accepted`` (y) per threshold."""
    fpr, tpr, _ = roc_curve(*_labelled(known, unknown))
    return {"unknown_accepted": fpr.tolist(), "known_accepted": tpr.tolist()}


def operating_point(
    known: np.ndarray,
    correct: np.ndarray,
    unknown: dict[str, np.ndarray],
    threshold: float,
) -> dict[str, Any]:
    """At ``threshold``: the known images rejected (FRR), the accuracy on known models
    (accepted and named right, over all known images), the closed-set accuracy and the
    accuracy of the accepted ones, and each unknown set's share rejected."""
    known, correct = np.asarray(known), np.asarray(correct, bool)
    accepted = known >= threshold
    return {
        "threshold": float(threshold),
        "frr": float(1 - accepted.mean()),
        "accuracy": float((accepted & correct).mean()),
        "closed_set_accuracy": float(correct.mean()),
        "accepted_accuracy": float(correct[accepted].mean()) if accepted.any() else None,
        "unknown_rejected": {
            k: float((np.asarray(u) < threshold).mean()) for k, u in unknown.items()
        },
    }
