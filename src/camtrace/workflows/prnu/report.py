"""The ``prnu:`` section's part of the report: the identification and detection table, the ROC,
and the PCE histograms of a photo against its own device, its model's other devices and the
other models' devices (log scale)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from camtrace.workflows.plots import new_figure
from camtrace.workflows.prnu.run import pair_masks
from camtrace.workflows.report import Report, percent

GROUPS = {
    "own": "own device",
    "same_model": "other devices of its model",
    "other_models": "devices of other models",
}


def pce_groups(prnu: dict[str, Any]) -> dict[str, np.ndarray]:
    """The PCE values of the metrics' photo-fingerprint pairs, by group (see ``GROUPS``)."""
    devices = prnu["devices"]
    pce = np.array([p["pce"] for p in prnu["probes"]])
    truth = np.array([devices.index(p["device"]) for p in prnu["probes"]])
    return {name: pce[m] for name, m in zip(GROUPS, pair_masks(truth, prnu["models"]))}


def histogram_figure(groups: dict[str, np.ndarray], threshold: float) -> Figure:
    """PCE histograms on a symmetric log axis (linear within +-1), counts on a log axis."""
    values = np.concatenate([v for v in groups.values() if v.size])
    edges = np.sinh(np.linspace(np.arcsinh(min(values.min(), -1)), np.arcsinh(values.max()), 60))
    fig = new_figure(8, 4)
    ax = fig.add_subplot()
    for name, v in groups.items():
        if v.size:
            ax.hist(
                v, bins=edges, histtype="step", linewidth=1.5, label=f"{GROUPS[name]} ({v.size})"
            )
    ax.axvline(
        threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}"
    )
    ax.set_xscale("symlog", linthresh=1)
    ax.set_yscale("log")
    ax.set_xlabel("PCE")
    ax.set_ylabel("photo-fingerprint pairs")
    ax.legend(fontsize=8)
    return fig


def roc_figure(roc: dict[str, list[float]], auc: float | None) -> Figure:
    """The ROC of the PCE as a device-match score (false-positive rate on a log axis)."""
    fig = new_figure(5, 4)
    ax = fig.add_subplot()
    fpr = np.asarray(roc["fpr"])
    floor = fpr[fpr > 0].min(initial=1e-3) / 2  # a false-positive rate of 0, drawn at the left
    ax.plot(
        np.maximum(fpr, floor),
        roc["tpr"],
        linewidth=1.5,
        label=f"AUC {auc:.4f}" if auc is not None else None,
    )
    ax.set_xscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false-positive rate (other devices)")
    ax.set_ylabel("true-positive rate (own device)")
    ax.grid(alpha=0.3)
    if auc is not None:
        ax.legend(loc="lower right")
    return fig


def add_prnu_report(report: Report, prnu: dict[str, Any]) -> None:
    """The section's table and figures."""
    ident, det, pce = prnu["identification"], prnu["detection"], prnu["pce"]
    thr = prnu["threshold"]
    report.heading("PRNU device identification (Lukas 2006; Chen 2008; PCE of Goljan 2009)")
    report.key_values(
        {
            "devices (fingerprints)": len(prnu["devices"]),
            "photos per fingerprint": _range([f["photos"] for f in prnu["fingerprints"].values()]),
            "photos matched": f"{prnu['photos']} ({prnu['eval_scenes']} evaluation scenes)",
            "image size": "x".join(map(str, prnu["image_size"][::-1])),
            "device identified (highest PCE)": f"{percent(ident['accuracy'])} "
            f"({ident['correct']} / {prnu['photos']})",
            "its camera model right": percent(ident["model_accuracy"]),
            f"own device at PCE >= {thr:g}": percent(det["tpr"]),
            f"other devices at PCE >= {thr:g}": percent(det["fpr"], 2),
            "... of the same model": percent(det["fpr_same_model"], 2),
            "... of other models": percent(det["fpr_other_models"], 2),
            "AUC (all other devices)": _fixed(det["auc"]),
            "AUC (same-model devices)": _fixed(det["auc_same_model"]),
        },
        caption="Each device's fingerprint from its photos of the scenes outside the "
        "evaluation split; every evaluation-scene photo matched against every device",
    )
    report.table(
        [
            {"against": GROUPS[name], **{k: v for k, v in s.items()}}
            for name, s in pce.items()
            if s is not None
        ],
        caption="PCE of photo-fingerprint pairs: count, 5th percentile, median, 95th percentile",
        floatfmt=".1f",
    )
    report.figure(
        histogram_figure(pce_groups(prnu), thr),
        caption="PCE of every photo against every fingerprint (symmetric log scale)",
    )
    report.figure(roc_figure(prnu["roc"], det["auc"]), caption="ROC of the PCE as a device match")


def _range(values: list[int]) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _fixed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
