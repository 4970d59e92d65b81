"""The ``spoof:`` section of a run: whole photos of the evaluation split spoofed toward
another camera model with a gradient attack against one of the run's detectors (Chen 2019
Sec. 3.4: patch by patch, stitched), written as PNG files, identified again from disk; the
report shows each photo before and after, with the amplified difference."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from camtrace.data.images import load_rgb
from camtrace.data.manifest import Manifest
from camtrace.errors import CamtraceError
from camtrace.models.base import Detector
from camtrace.models.checkpoint import load_detector
from camtrace.models.inference import identify
from camtrace.workflows.config import SpoofConfig
from camtrace.workflows.plots import amplified_difference, new_figure
from camtrace.workflows.report import Report, percent
from camtrace.workflows.spoof import spoof

if TYPE_CHECKING:
    from camtrace.workflows.sections import Context

SPOOF_DIR = "spoof"


def spoof_photos(manifest: Manifest, photos: int) -> list[int]:
    """Rows of the first eval photo of each of the first ``photos`` models."""
    rows: list[int] = []
    for model in manifest.models[:photos]:
        rows.append(
            next(i for i, r in enumerate(manifest) if r.model == model and r.split == "eval")
        )
    return rows


def next_model(detector: Detector, photo: Path) -> str:
    """The model after the one ``detector`` reads ``photo`` as, in class order: a target
    the photo is not already read as."""
    classes = detector.classes
    return classes[(classes.index(identify(detector, photo).model) + 1) % len(classes)]


def run_spoof(
    section: SpoofConfig,
    detectors: dict[str, dict[str, Any]],
    manifest: Manifest,
    run_dir: Path,
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Spoof the section's photos; returns the metrics (one row per photo)."""
    name = section.detector or next(iter(detectors))
    if name not in detectors:
        raise CamtraceError(
            f"spoof.detector: {name} is not a detector of this run: {list(detectors)}"
        )
    detector = load_detector(detectors[name]["checkpoint"])
    classes = detector.classes
    if section.target is not None and section.target not in classes:
        raise CamtraceError(f"spoof.target: {section.target} is not one of {classes}")
    rows = []
    for i in spoof_photos(manifest, section.photos):
        record = manifest[i]
        target = section.target or next_model(detector, manifest.abspath(record))
        out = run_dir / SPOOF_DIR / f"{Path(record.path).stem}-as-{target}.png"
        settings = section.replace(target=target)
        result = spoof(detector, manifest.abspath(record), out, settings, progress=progress)
        log(
            f"spoof {Path(record.path).name}: {result.before.model} -> {result.after.model} "
            f"(target {target}), PSNR {result.psnr:.1f} dB"
        )
        rows.append(
            {"true": record.model, "source": str(manifest.abspath(record)), **result.to_dict()}
        )
    return {
        "detector": name,
        "method": section.method,
        "eps": section.eps,
        "params": dict(section.params),
        "photos": rows,
    }


def spoof_rows(spoof: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per spoofed photo: the detector's vote before and on the file read back, and
    where it has an open-set calibration, the file's answer with it on."""

    def read(ident: dict[str, Any]) -> str:
        return f"{ident['model']} ({percent(ident['vote_share'], 0)})"

    rows = []
    for p in spoof["photos"]:
        row = {
            "photo": Path(p["source"]).name,
            "camera": p["true"],
            "read before": read(p["before"]),
            "target": p["target"],
            "read after (PNG from disk)": read(p["after"]),
            "reached": "yes" if p["success"] else "no",
        }
        if p.get("open_set") is not None:
            row["open set after"] = p["open_set"]
        row["PSNR dB"] = "-" if p["psnr"] is None else f"{p['psnr']:.1f}"
        row["Linf"] = p["linf"]
        rows.append(row)
    return rows


def add_spoof_report(report: Report, spoof: dict[str, Any]) -> None:
    """Each photo before and after, the detector's answers, PSNR, the amplified difference."""
    method, eps, detector = spoof["method"], spoof["eps"], spoof["detector"]
    report.heading(f"Whole photos spoofed ({method}, eps {eps:g}, against {detector})")
    report.table(
        spoof_rows(spoof),
        caption="Each voting patch attacked on the 8-bit grid, the image stitched, saved as PNG "
        "and identified again from the file: by the vote (the attack's goal) and, for a "
        "calibrated detector, with its open set on (camtrace identify's default)",
    )
    for p in spoof["photos"]:
        clean, spoofed = load_rgb(p["source"]), load_rgb(p["saved"])
        diff, gain = amplified_difference(clean, spoofed)
        fig = new_figure(12, 3.6)
        for k, (image, title) in enumerate(
            (
                (clean, f"original: read {p['before']['model']}"),
                (spoofed, f"spoofed: read {p['after']['model']}"),
                (diff, f"difference x{gain:g}"),
            )
        ):
            ax = fig.add_subplot(1, 3, k + 1)
            ax.imshow(np.asarray(image))
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        report.figure(fig, caption=f"{Path(p['source']).name} -> {p['target']}")


class SpoofSection:
    """Whole eval photos spoofed, read back from disk, before and after."""

    key, stage = "spoof", "detectors"

    def check(self, section: Any, ctx: Context) -> None:
        return None

    def plan(self, section: Any, ctx: Context) -> Any:
        return section

    def run(self, plan: Any, ctx: Context) -> dict[str, Any]:
        result = run_spoof(
            plan, ctx.detectors, ctx.split.manifest, ctx.run_dir, ctx.progress, ctx.log
        )
        ctx.clock.lap("spoof")
        return result

    def metrics(self, result: dict[str, Any]) -> dict[str, Any]:
        return result

    def report(self, report: Report, result: dict[str, Any], ctx: Context) -> None:
        add_spoof_report(report, result)
