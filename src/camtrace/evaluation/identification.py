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
from camtrace.evaluation import plots
from camtrace.evaluation.report import Report, percent
from camtrace.models.base import Detector
from camtrace.models.inference import embed_patches, patch_scores

VOTING_KS = (1, 2, 4, 8, 16, 32)


def store_labels(store: PatchStore, detector: Detector, idx: np.ndarray) -> np.ndarray:
    """Labels of ``idx`` in the detector's class order (the store may list other models)."""
    lookup = {c: i for i, c in enumerate(detector.classes)}
    return np.array([lookup[m] for m in store.meta["model"][idx]], dtype=np.int64)


def evaluate_identifier(
    detector: Detector, store: PatchStore, split: str = "eval", ks: Sequence[int] = VOTING_KS
) -> dict[str, Any]:
    """Metrics of ``detector`` on the ``split`` patches of ``store`` (counts, not floats only)."""
    idx = store.indices(split, models=[m for m in detector.classes if m in store.classes])
    patches = store.patches(idx)
    y = store_labels(store, detector, idx)
    images = store.meta["image"][idx]
    result: dict[str, Any] = {"split": split, "patches": len(idx), "images": len(np.unique(images))}
    card = getattr(detector, "card", {})
    heads = {} if card.get("svm_only") else {"cnn": _softmax_scores(detector, patches)}
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


def _softmax_scores(detector: Detector, patches: np.ndarray) -> np.ndarray:
    svm, detector.svm = getattr(detector, "svm", None), None
    try:
        return patch_scores(detector, patches)
    finally:
        detector.svm = svm


def add_identification_report(
    report: Report, metrics: dict[str, Any], classes: list[str], label: str = ""
) -> None:
    """Tables and figures of :func:`evaluate_identifier`'s result."""
    heads = [h for h in ("svm", "cnn") if h in metrics]
    names = {"svm": "CNN features + linear OvO SVMs (Bondi)", "cnn": "CNN soft-max"}
    report.heading(f"Identification {label}".strip())
    report.paragraph(
        f"{metrics['images']} images, {metrics['patches']} patches of the '{metrics['split']}' "
        f"split."
    )
    report.table(
        [
            {
                "classifier": names[h],
                "single-patch accuracy": percent(metrics[h]["patch"]["accuracy"]),
                "image accuracy (majority vote)": percent(metrics[h]["image"]["accuracy"]),
            }
            for h in heads
        ],
        caption="Accuracy on the evaluation split",
    )
    primary = metrics["primary"]
    rows = []
    for c in classes:
        rows.append(
            {
                "camera model": c,
                "patch": percent(metrics[primary]["patch"]["per_class"].get(c)),
                "image": percent(metrics[primary]["image"]["per_class"].get(c)),
            }
        )
    report.table(rows, caption=f"Per-model accuracy ({names[primary]})")
    cm = np.asarray(metrics[primary]["patch"]["confusion"], dtype=float)
    report.figure(
        plots.confusion_figure(cm, classes, "Single-patch confusion (Bondi Fig. 2)"),
        caption="Rows: true camera model; columns: predicted. One patch per decision.",
    )
    cm_img = np.asarray(metrics[primary]["image"]["confusion"], dtype=float)
    report.figure(
        plots.confusion_figure(cm_img, classes, "Image-level confusion (majority vote)"),
    )
    curves = {names[h]: {int(k): v for k, v in metrics[h]["voting_curve"].items()} for h in heads}
    report.figure(
        plots.voting_curve_figure(curves, "Accuracy vs number of voting patches (Bondi Fig. 3)"),
    )


def features_and_labels(
    detector: Detector, store: PatchStore, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """128-d (or D-d) features and labels of a split, for SVM fitting."""
    idx = store.indices(split, models=[m for m in detector.classes if m in store.classes])
    return embed_patches(detector, store.patches(idx)), store_labels(store, detector, idx)
