"""``camtrace evaluate``: one or several detectors on one patch store, one report.

Several detectors give the comparison table of a detector zoo (single-patch and image
accuracy side by side), then each detector's confusion matrices and voting curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camtrace.data.patch_store import PatchStore
from camtrace.evaluation.identification import evaluate_identifier
from camtrace.hardware import environment
from camtrace.models import load_detector
from camtrace.workflows import plots
from camtrace.workflows.report import Report, percent, write_run


def evaluate_detectors(
    checkpoints: Sequence[Path], store: PatchStore, run_dir: Path, split: str = "eval"
) -> tuple[Path, list[dict]]:
    """Evaluate each checkpoint on ``store``'s ``split``; write the run folder.

    Returns the run folder and the rows of the comparison table.
    """
    results = {}
    for path in checkpoints:
        det = load_detector(path)
        results[str(path)] = (det, evaluate_identifier(det, store, split=split))
    report = Report(
        "camtrace: evaluation", f"{len(results)} detector(s) on {store.path} ({split} split)"
    )
    rows = []
    for path, (det, res) in results.items():
        head = res[res["primary"]]
        rows.append(
            {
                "detector": det.arch,
                "checkpoint": Path(path).name,
                "patch size": det.patch_size,
                "single-patch accuracy": percent(head["patch"]["accuracy"]),
                "image accuracy": percent(head["image"]["accuracy"]),
                "patches": res["patches"],
            }
        )
    report.table(rows, caption="Accuracy on the evaluation split")
    for path, (det, res) in results.items():
        add_identification_report(
            report, res, det.classes, label=f"- {det.arch} ({Path(path).name})"
        )
    metrics = {
        "command": "camtrace evaluate",
        "environment": environment(torch.device("cpu"), "fp32"),  # what made the numbers
        "patch_store": str(store.path),
        "split": split,
        "detectors": {
            path: {"arch": det.arch, "classes": det.classes, **res}
            for path, (det, res) in results.items()
        },
    }
    config = {"detectors": [str(p) for p in checkpoints], "store": str(store.path), "split": split}
    write_run(run_dir, metrics, report, config)
    return run_dir, rows


def add_identification_report(
    report: Report, metrics: dict[str, Any], classes: list[str], label: str = ""
) -> None:
    """Tables and figures of :func:`evaluate_identifier`'s result."""
    heads = [h for h in ("svm", "cnn") if h in metrics]
    names = {"svm": "features + linear OvO SVMs (Bondi)", "cnn": "CNN soft-max"}
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
