"""``camtrace evaluate``: one or several detectors on one patch store, one report.

Several detectors give the comparison table of a detector zoo (single-patch and image
accuracy side by side), then each detector's confusion matrices and voting curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from camtrace.data.patch_store import PatchStore
from camtrace.evaluation.identification import add_identification_report, evaluate_identifier
from camtrace.evaluation.report import Report, percent, write_run
from camtrace.models import load_detector


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
