"""Evaluate a camera-model identifier the way Bondi 2017 reports it (Sec. III-A).

Single-patch accuracy (network arg-max and SVM battery), image accuracy by majority vote
over K patches, confusion matrices (Fig. 2) and accuracy vs number of voting patches (Fig. 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from camtrace.data.patch_store import PatchStore
from camtrace.evaluation import metrics as M
from camtrace.evaluation.attack_metrics import softmax_scores
from camtrace.models.base import Detector
from camtrace.models.inference import patch_scores

VOTING_KS = (1, 2, 4, 8, 16, 32)


def evaluate_identifier(
    detector: Detector, store: PatchStore, split: str = "eval", ks: Sequence[int] = VOTING_KS
) -> dict[str, Any]:
    """Metrics of ``detector`` on the ``split`` patches of ``store`` (counts, not floats only)."""
    idx = store.indices(split, models=[m for m in detector.classes if m in store.classes])
    patches = store.patches(idx)
    y = store.labels(idx, detector.classes)
    images = store.meta["image"][idx]
    result: dict[str, Any] = {"split": split, "patches": len(idx), "images": len(np.unique(images))}
    card = getattr(detector, "card", {})
    heads = {} if card.get("svm_only") else {"cnn": softmax_scores(detector, patches)}
    if getattr(detector, "svm", None) is not None:
        heads["svm"] = patch_scores(detector, patches)
    for name, scores in heads.items():
        pred = scores.argmax(1)
        k_max = int(np.bincount(images).max())
        _, img_pred = M.majority_vote(pred, images, detector.num_classes, k=k_max, scores=scores)
        _, img_true = M.image_labels(y, images)
        result[name] = {
            "patch": M.classification_summary(y, pred, detector.classes),
            "image": M.classification_summary(img_true, img_pred, detector.classes),
            "voting_curve": M.voting_curve(
                pred, y, images, detector.num_classes, [k for k in ks if k <= k_max], scores
            ),
        }
    result["primary"] = "svm" if "svm" in heads else "cnn"
    return result
