"""The ``openset:`` section's part of report.html: per detector, its chosen score's AUROC
against the held-out camera models and its operating point, every score's AUROC (the
evidence for the choice), and its ROC curves."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from camtrace.workflows.plots import new_figure
from camtrace.workflows.report import Report, percent


def roc_figure(name: str, d: dict[str, Any], tests: list[str]) -> Figure:
    """The chosen score's ROC against each test set, its operating point marked."""
    fig = new_figure(5.0, 4.2)
    ax = fig.add_subplot()
    op = d["operating"][d["score"]]
    for test in tests:
        curve = d["roc"][test]
        (line,) = ax.plot(
            curve["unknown_accepted"],
            curve["known_accepted"],
            label=f"{test} (AUROC {d['auroc'][d['score']][test]:.3f})",
        )
        accepted = 1 - op["unknown_rejected"][test]
        ax.plot([accepted], [1 - op["frr"]], "o", color=line.get_color())
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set_xlabel("unknown-model images accepted")
    ax.set_ylabel("known-model images accepted")
    ax.set_title(f"Open set - {name} ({d['score']} score)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def add_openset_report(report: Report, result: dict[str, Any]) -> None:
    """The section's tables and ROC figures."""
    tests, selection = result["tests"], result["selection"]
    dets = result["detectors"]
    report.heading("Open set: known camera models vs models held out of training")
    rows = []
    for name, d in dets.items():
        op = d["operating"][d["score"]]
        rows.append(
            {
                "detector": name,
                "score": d["score"],
                **{f"AUROC {t}": f"{d['auroc'][d['score']][t]:.3f}" for t in tests},
                f"FRR on {d['known']['split']}": percent(op["frr"]),
                "accuracy on known": percent(op["accuracy"]),
                "closed-set accuracy": percent(op["closed_set_accuracy"]),
                **{f"rejected {t}": percent(op["unknown_rejected"][t]) for t in tests},
            }
        )
    report.table(
        rows,
        caption=f"Each detector's score, chosen by AUROC on the {selection} of the many "
        f"preset's models; threshold at {percent(result['frr'], 0)} false rejection on the "
        "validation images; accuracy on known = accepted and named right, over all known "
        "evaluation images",
    )
    report.table(
        [
            {
                "detector": name,
                "score": score + (" (chosen)" if score == d["score"] else ""),
                **{f"AUROC {t}": f"{a[t]:.3f}" for t in (selection, *tests)},
                "accuracy on known": percent(d["operating"][score]["accuracy"]),
            }
            for name, d in dets.items()
            for score, a in d["auroc"].items()
        ],
        caption="Every score of every detector (msp: max soft-max, energy: logsumexp of the "
        "logits, vote: the winner's vote share, margin: the SVMs', mahalanobis: distance to "
        "the training cloud)",
    )
    for name, d in dets.items():
        held = ", ".join(
            f"{t}: {h['images']} images of {len(h['models'])} models"
            for t, h in d["held_out"].items()
        )
        report.figure(roc_figure(name, d, tests), caption=f"{name}; held out: {held}")
