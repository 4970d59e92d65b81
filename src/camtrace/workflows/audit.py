"""``camtrace audit``: the shortcut check a forensic researcher runs before trusting a dataset.

Per camera model: image sizes and orientations, EXIF presence, JPEG quality estimate,
subsampling and quantisation tables, median noise sigma, CFA trace ratio and frame-border
seam (:mod:`camtrace.evaluation.traces`). Across models: which metadata field alone identifies a
model, the scenes every model shot, and the scene-disjoint accuracy of two classifiers that
see no camera trace at all (colour statistics; the JPEG table). Each is flagged when it makes
the task trivial (issue 11). Writes ``audit.json`` and ``report.html`` atomically.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from rich.progress import track

from camtrace.data.codec import Jpeg
from camtrace.data.images import DECODE_ERRORS, load_rgb
from camtrace.data.layouts import index_dataset
from camtrace.data.manifest import Manifest, Record
from camtrace.errors import CamtraceError
from camtrace.evaluation.traces import (
    BORDER_BAND,
    border_seam_ratio,
    cfa_trace_ratio,
    jpeg_quality_estimate,
    noise_sigma,
    residual_cooccurrence,
)
from camtrace.workflows.report import Report, percent, write_run

if TYPE_CHECKING:
    from camtrace.workflows.sections import Context

MIN_SIDE = 32  # smaller images are skipped: too few pixels for the trace statistics
TRIVIAL_ACCURACY = 0.9  # a classifier that sees no camera trace should stay far below this
FOLDS = 5
# A model whose median border seam exceeds this is flagged: four real camera originals gave
# 2.2-5x, SimCam's models 3-7x once the sensor is larger than the frame (issue 22).
BORDER_SEAM_LIMIT = 8.0
NO_JPEG = "none"
# Metadata fields checked for "this field alone identifies a model".
FIELDS = {"size": "image size", "orientation": "orientation", "exif": "EXIF presence"}


@dataclass(frozen=True)
class ImageFacts:
    """What the audit measures on one readable image."""

    record: Record
    size: str
    orientation: str
    exif: bool
    quality: int | None
    subsampling: str
    tables: str
    noise_sigma: float
    cfa_ratio: float
    cfa_lattice: str
    border_seam: float | None
    colour: tuple[float, ...]
    residual: np.ndarray


def _load(
    source: str | Path | Manifest, layout: str, scenes_csv: str | Path | None
) -> tuple[Manifest, list[dict], Path]:
    """The manifest to audit, the files skipped as not fitting ``layout``, and where the data
    is: a :class:`Manifest`, a manifest CSV, or a folder indexed with ``layout``."""
    if isinstance(source, Manifest):
        return source, [], source.root
    source = Path(source)
    if not source.exists():
        raise CamtraceError(f"{source}: not found; give a dataset folder or a manifest.csv")
    if source.is_file():
        return Manifest.load(source), [], source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the skipped files are reported below
        manifest = index_dataset(source, layout, scenes_csv=scenes_csv)
    reason = f"does not follow the {layout} layout; rename it or pick the right --layout"
    skipped = [{"path": p, "reason": f"{source / p}: {reason}"} for p in manifest.skipped]
    return manifest, skipped, source


def _check_models(models: set[str], source: Path) -> None:
    if len(models) < 2:
        found = f"only {next(iter(models))}" if models else "no readable images"
        raise CamtraceError(
            f"{source}: {found}; audit compares camera models, give data of two or more"
        )


def colour_statistics(rgb: np.ndarray) -> tuple[float, ...]:
    """Mean and standard deviation per RGB channel and mean HSV saturation: global tone and
    colour, which say nothing about the camera's traces."""
    x = rgb.reshape(-1, 3).astype(np.float64)
    high, low = x.max(axis=1), x.min(axis=1)
    saturation = np.divide(high - low, high, out=np.zeros_like(high), where=high > 0)
    return (*x.mean(axis=0), *x.std(axis=0), float(saturation.mean()))


def _jpeg_facts(path: Path, fmt: str) -> tuple[int | None, str, str]:
    """Quality estimate, subsampling and a digest of the quantisation tables (JPEG only)."""
    if fmt != "JPEG":
        return None, NO_JPEG, NO_JPEG
    jpeg = Jpeg.from_file(path)
    digest = hashlib.sha256(repr(jpeg.qtables).encode()).hexdigest()[:12]
    return jpeg_quality_estimate(jpeg.qtables[0]), jpeg.subsampling, digest


def measure(path: Path, record: Record) -> ImageFacts:
    """The audit's facts on one image; unreadable, truncated or tiny files raise
    :class:`CamtraceError`."""
    rgb = load_rgb(path, min_size=MIN_SIDE)
    try:
        with Image.open(path) as im:
            fmt, exif = im.format, len(im.getexif()) > 0
    except DECODE_ERRORS as e:
        raise CamtraceError(f"{path}: unreadable metadata ({e}); remove the file") from None
    h, w = rgb.shape[:2]
    trace = cfa_trace_ratio(rgb)
    return ImageFacts(
        record,
        f"{w}x{h}",
        "landscape" if w > h else "portrait" if h > w else "square",
        exif,
        *_jpeg_facts(path, fmt),
        noise_sigma(rgb),
        trace.ratio,
        trace.lattice,
        border_seam_ratio(rgb) if min(h, w) >= 4 * BORDER_BAND else None,
        colour_statistics(rgb),
        residual_cooccurrence(rgb),
    )


def _per_model(facts: list[ImageFacts]) -> dict[str, dict]:
    """Per model: counts of each field's values and the median trace statistics."""
    by_model: dict[str, list[ImageFacts]] = defaultdict(list)
    for f in facts:
        by_model[f.record.model].append(f)
    return {
        model: {
            "images": len(fs),
            "sizes": dict(Counter(f.size for f in fs)),
            "orientations": dict(Counter(f.orientation for f in fs)),
            "exif_fraction": sum(f.exif for f in fs) / len(fs),
            "jpeg_quality": dict(Counter(str(f.quality or NO_JPEG) for f in fs)),
            "subsampling": dict(Counter(f.subsampling for f in fs)),
            "tables": sorted({f.tables for f in fs}),
            "noise_sigma": median(f.noise_sigma for f in fs),
            "cfa_trace_ratio": median(f.cfa_ratio for f in fs),
            "cfa_lattice": Counter(f.cfa_lattice for f in fs).most_common(1)[0][0],
            "border_seam": _median_or_none(f.border_seam for f in fs),
        }
        for model, fs in sorted(by_model.items())
    }


def _median_or_none(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return median(known) if known else None


def identified_by(facts: list[ImageFacts], field: str) -> list[str]:
    """Models none of whose values of ``field`` occurs in another model: the field alone
    identifies them."""
    values: dict[str, set] = defaultdict(set)
    for f in facts:
        values[f.record.model].add(getattr(f, field))
    return sorted(
        m
        for m, own in values.items()
        if not own & set().union(*(v for other, v in values.items() if other != m))
    )


def _shared_scenes(facts: list[ImageFacts]) -> list[str] | None:
    """Scenes shot by every model, or None when the data has no scene ids."""
    if not all(f.record.scene for f in facts):
        return None
    scenes: dict[str, set[str]] = defaultdict(set)
    for f in facts:
        scenes[f.record.model].add(f.record.scene)
    return sorted(set.intersection(*scenes.values()))


def _logistic(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """Standardised logistic regression (colour statistics, residual features)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(train_y)) < 2:
        return np.full(len(test_x), train_y[0])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return model.fit(train_x, train_y).predict(test_x)


def _table_vote(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """The majority model among training images with the same table digest (the training
    majority for an unseen digest): a nearest-neighbour on one-hot table digests."""
    votes: dict[str, Counter] = defaultdict(Counter)
    for digest, model in zip(train_x, train_y, strict=True):
        votes[digest][model] += 1
    fallback = Counter(train_y).most_common(1)[0][0]
    return np.array([votes[d].most_common(1)[0][0] if d in votes else fallback for d in test_x])


def disjoint_accuracy(
    predict: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    groups: list[str],
) -> float | None:
    """Out-of-fold accuracy of ``predict`` over a GroupKFold on ``groups`` (no group in both
    training and test); None with fewer than two groups."""
    from sklearn.model_selection import GroupKFold

    folds = min(FOLDS, len(set(groups)))
    if folds < 2:
        return None
    correct = 0
    for train, test in GroupKFold(folds).split(x, y, groups):
        correct += int((predict(x[train], y[train], x[test]) == y[test]).sum())
    return correct / len(y)


def _groups(facts: list[ImageFacts]) -> tuple[str, list[str]]:
    """Scene-disjoint folds, or image-disjoint without scene ids."""
    scenes = [f.record.scene for f in facts]
    if all(scenes):
        return "scene-disjoint", scenes
    return "image-disjoint", [f.record.path for f in facts]


def _classifiers(facts: list[ImageFacts], groups: list[str]) -> dict[str, float | None]:
    """Accuracy of both classifiers that see no camera trace (the shortcuts)."""
    y = np.array([f.record.model for f in facts])
    colour = np.array([f.colour for f in facts])
    tables = np.array([f.tables for f in facts])
    return {
        "colour statistics": disjoint_accuracy(_logistic, colour, y, groups),
        "JPEG table": disjoint_accuracy(_table_vote, tables, y, groups),
    }


def trace_accuracy(facts: list[ImageFacts], groups: list[str]) -> float | None:
    """Accuracy of a linear classifier on the residual features alone: how far the camera
    traces separate the models, whatever a detector's budget (not a shortcut: the signal)."""
    y = np.array([f.record.model for f in facts])
    return disjoint_accuracy(_logistic, np.array([f.residual for f in facts]), y, groups)


def _flags(
    facts: list[ImageFacts], models: dict[str, dict], split: str, accuracy: dict
) -> list[str]:
    """One sentence per shortcut that makes the task trivial."""
    n_models = len(models)
    flags = []
    seams = {m: s["border_seam"] for m, s in models.items()}
    seamed = [f"{m} {v:.1f}x" for m, v in seams.items() if v is not None and v > BORDER_SEAM_LIMIT]
    if seamed:
        flags.append(
            f"frame-border seam (median, real camera originals 2-5x): {', '.join(seamed)}; "
            "patches at the frame's edge identify these models"
        )
    for field, name in {**FIELDS, "tables": "JPEG table"}.items():
        models = identified_by(facts, field)
        if models:
            flags.append(
                f"{name} alone identifies a model: {len(models)} of {n_models} "
                f"({', '.join(models)})"
            )
    for name, acc in accuracy.items():
        if acc is not None and acc >= TRIVIAL_ACCURACY:
            flags.append(
                f"{name} classifier: {percent(acc)} {split} accuracy (chance "
                f"{percent(1 / n_models)}), at or above {percent(TRIVIAL_ACCURACY, 0)}"
            )
    return flags


def _report(result: dict) -> Report:
    report = Report("camtrace audit", f"{result['source']}: {result['images']} images")
    report.heading("Shortcuts")
    for text in result["flags"] or ["No shortcut flagged."]:
        report.paragraph(text)
    report.heading("Per model")
    report.table(
        [
            {
                "model": m,
                "images": s["images"],
                "sizes": ", ".join(s["sizes"]),
                "orientations": ", ".join(s["orientations"]),
                "EXIF": percent(s["exif_fraction"], 0),
                "JPEG quality": ", ".join(s["jpeg_quality"]),
                "subsampling": ", ".join(s["subsampling"]),
                "tables": ", ".join(s["tables"]),
                "noise sigma": s["noise_sigma"],
                "CFA trace ratio": s["cfa_trace_ratio"],
                "CFA lattice": s["cfa_lattice"],
                "border seam": "-" if s["border_seam"] is None else f"{s['border_seam']:.1f}x",
            }
            for m, s in result["models"].items()
        ],
        caption="Medians over each model's images (noise sigma: Immerkaer 1996, grey levels; "
        "CFA trace ratio: 1.0 = no trace; border seam: the outer 16 lines' largest second "
        "difference of line means over the interior median, real camera originals 2-5x)",
    )
    report.heading("Across models")
    shared = result["shared_scenes"]
    report.key_values(
        {
            "JPEG tables alone identify": f"{result['tables_identify']} of {len(result['models'])}"
            " models",
            "scenes shot by every model": "no scene ids" if shared is None else len(shared),
            **{
                f"{name} classifier ({result['split']})": percent(acc)
                for name, acc in result["accuracy"].items()
            },
            f"camera-trace classifier ({result['split']})": percent(result["trace_accuracy"]),
        }
    )
    report.paragraph(
        "The camera-trace classifier is a logistic regression on SPAM-style co-occurrences of "
        "the high-pass residual (Pevny, Bas & Fridrich 2010): what the traces alone give a "
        "linear model. High is the signal a detector should learn, not a shortcut."
    )
    if result["skipped"]:
        report.heading(f"Skipped files ({len(result['skipped'])})")
        report.table(result["skipped"])
    return report


def trace_sentence(result: dict) -> str:
    """The camera-trace classifier's accuracy in one line (the CLI's and a run report's)."""
    return (
        f"Camera traces alone (linear classifier on residual co-occurrences, {result['split']}): "
        f"{percent(result['trace_accuracy'])}"
    )


def audit_summary(result: dict, where: str) -> dict:
    """The part of an audit a run's metrics.json keeps, with the path of the full audit."""
    keys = ("images", "tables_identify", "split", "accuracy", "trace_accuracy", "flags")
    return {**{k: result[k] for k in keys}, "skipped": len(result["skipped"]), "report": where}


def add_audit_section(report: Report, result: dict, where: str) -> None:
    """The audit's flags as a section of another report (a run's), pointing to its own."""
    report.heading("Data audit")
    for text in result["flags"] or ["No shortcut flagged."]:
        report.paragraph(text)
    report.paragraph(trace_sentence(result))
    report.paragraph(f"Per-model traces and metadata: {where}")


def audit(
    source: str | Path | Manifest,
    out_dir: str | Path,
    layout: str = "dresden",
    scenes_csv: str | Path | None = None,
    progress: bool = False,
) -> dict:
    """Audit a dataset (a :class:`Manifest`, a manifest CSV, or a folder named by ``layout``,
    scene ids from ``scenes_csv``, columns ``file,scene``) for shortcuts.

    Unreadable, truncated, tiny or non-image files are skipped and listed (one line each).
    Writes ``audit.json`` and ``report.html`` into ``out_dir``; returns the JSON's content.
    """
    manifest, skipped, source = _load(source, layout, scenes_csv)
    _check_models({r.model for r in manifest}, source)
    facts = []
    for record in track(manifest.records, description="auditing", disable=not progress):
        try:
            facts.append(measure(manifest.abspath(record), record))
        except CamtraceError as e:
            skipped.append({"path": record.path, "reason": str(e)})
    _check_models({f.record.model for f in facts}, source)
    models = _per_model(facts)
    split, groups = _groups(facts)
    accuracy = _classifiers(facts, groups)
    result = {
        "source": str(source),
        "images": len(facts),
        "models": models,
        "tables_identify": len(identified_by(facts, "tables")),
        "shared_scenes": _shared_scenes(facts),
        "split": split,
        "accuracy": accuracy,
        "trace_accuracy": trace_accuracy(facts, groups),
        "flags": _flags(facts, models, split, accuracy),
        "skipped": skipped,
    }
    write_run(out_dir, result, _report(result), metrics_name="audit.json")
    return result


AUDIT_REPORT = "audit/report.html"  # with ``audit: true``, relative to the run folder


class AuditSection:
    """The data checked for shortcuts first (camtrace audit) into runs/<name>/audit/."""

    key, stage = "audit", "data"

    def check(self, section: bool, ctx: Context) -> None:
        return None

    def plan(self, section: bool, ctx: Context) -> None:
        return None

    def run(self, plan: None, ctx: Context) -> dict[str, Any]:
        result = audit(ctx.manifest, ctx.run_dir / "audit", progress=ctx.progress)
        ctx.clock.lap("audit")
        return result

    def metrics(self, result: dict[str, Any]) -> dict[str, Any]:
        return audit_summary(result, AUDIT_REPORT)

    def report(self, report: Report, result: dict[str, Any], ctx: Context) -> None:
        add_audit_section(report, result, AUDIT_REPORT)
