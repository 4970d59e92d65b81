"""A photo examined for an analyst's case file: which camera model shot it (Bondi et al.
2017's majority vote over patches), where (every grid block labelled: the attribution map of
Bondi's Fig. 5, which exposes splicing), and whether the file agrees with itself: its EXIF
Make/Model and its JPEG quantisation tables against the predicted camera model's own (known
for SimCam's models). The batch table of many photos and its CSV; the one-page report.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from camtrace.data.codec import Jpeg
from camtrace.data.images import load_rgb
from camtrace.data.layouts import ExifCamera, read_exif_camera
from camtrace.data.simcam import camera_tables
from camtrace.errors import CamtraceError
from camtrace.evaluation.traces import jpeg_quality_estimate
from camtrace.io import write_text
from camtrace.models import Detector
from camtrace.models.inference import Identification, block_map, identify, patch_protocol
from camtrace.models.zoo import sha256_of
from camtrace.workflows.plots import attribution_map_figure, bar_figure, class_colors
from camtrace.workflows.report import Report, percent

MAX_PIXELS = 100_000_000  # load_rgb's decompression-bomb limit: a 100 MP header is refused
WEAK_VOTE = 0.5  # below this share of the votes the answer is flagged as weak
JPEG_FORMATS = ("JPEG", "MPO")  # Pillow's formats that carry JPEG quantisation tables
BATCH_COLUMNS = ("file", "prediction", "vote share", "EXIF model", "JPEG quality", "flags")

Status = Literal["pass", "warn", "info", "unavailable"]


@dataclass(frozen=True)
class Check:
    """One consistency check of a photo: its ``status`` and a sentence saying why."""

    name: str
    status: Status
    sentence: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "sentence": self.sentence}


@dataclass(frozen=True)
class JpegTrace:
    """The photo's JPEG setting: the IJG quality its luma table is closest to, its chroma
    subsampling, the known camera models whose own tables these exactly are, and whether
    they are the predicted model's (None: no known tables for it)."""

    quality: int
    subsampling: str
    cameras: tuple[str, ...]
    match: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "quality": self.quality,
            "subsampling": self.subsampling,
            "cameras": list(self.cameras),
            "match": self.match,
        }


@dataclass(frozen=True)
class BlockMap:
    """Every block of the non-overlapping grid: top-left ``positions`` (M, 2) as (y, x),
    class index ``labels`` (M,) and the winning class's share of the scores ``confidence``."""

    size: int
    labels: np.ndarray
    positions: np.ndarray
    confidence: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "labels": self.labels.astype(int).tolist(),
            "positions": self.positions.astype(int).tolist(),
            "confidence": np.round(self.confidence.astype(float), 3).tolist(),
        }


@dataclass
class Examination:
    """What :func:`examine` found in one photo; ``name`` is how the analyst calls it."""

    name: str
    path: str
    format: str
    bytes: int
    sha256: str
    width: int
    height: int
    classes: list[str]
    identification: Identification
    exif: ExifCamera | None
    jpeg: JpegTrace | None
    blocks: BlockMap | None
    checks: list[Check]

    @property
    def flags(self) -> list[str]:
        """The names of the checks that warn."""
        return [c.name for c in self.checks if c.status == "warn"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with each class's colour of the attribution map."""
        colours = class_colors(len(self.classes))
        return {
            "name": self.name,
            "format": self.format,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "classes": self.classes,
            "colours": ["#{:02x}{:02x}{:02x}".format(*np.rint(c[:3] * 255).astype(int)) for c in colours],
            "identification": self.identification.to_dict(),
            "exif": None if self.exif is None else vars(self.exif),
            "jpeg": None if self.jpeg is None else self.jpeg.to_dict(),
            "blocks": None if self.blocks is None else self.blocks.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
            "flags": self.flags,
        }

    def row(self) -> dict[str, str]:
        """The photo's row of the batch table (:data:`BATCH_COLUMNS`)."""
        ident = self.identification
        return {
            "file": self.name,
            "prediction": ident.model,
            "vote share": f"{ident.vote_share:.1%}",
            "EXIF model": self.exif.label if self.exif else "",
            "JPEG quality": str(self.jpeg.quality) if self.jpeg else "",
            "flags": "; ".join(self.flags),
        }


def examine(
    detector: Detector,
    path: str | Path,
    name: str | None = None,
    *,
    blocks: bool = True,
    k: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Examination:
    """Examine the photo at ``path``: ``identify`` (majority vote over the detector's K
    patches), the block map when ``blocks``, EXIF Make/Model, the JPEG setting and the
    consistency checks. Errors name the photo as ``name`` (default: the path)."""
    path = Path(path)
    name = name or str(path)
    try:
        rgb = load_rgb(path, min_size=patch_protocol(detector).size, max_pixels=max_pixels)
        with Image.open(path) as im:
            fmt = str(im.format)
        exif = read_exif_camera(path)
        ident = identify(detector, rgb, k=k)
        jpeg = jpeg_trace(Jpeg.from_file(path), ident.model) if fmt in JPEG_FORMATS else None
    except CamtraceError as e:
        raise CamtraceError(str(e).replace(str(path), name)) from None
    ident.path = name
    grid = None
    if blocks:
        labels, positions, confidence = block_map(detector, rgb)
        grid = BlockMap(patch_protocol(detector).size, labels, positions, confidence)
    return Examination(
        name=name,
        path=str(path),
        format=fmt,
        bytes=path.stat().st_size,
        sha256=sha256_of(path),
        width=rgb.shape[1],
        height=rgb.shape[0],
        classes=list(detector.classes),
        identification=ident,
        exif=exif,
        jpeg=jpeg,
        blocks=grid,
        checks=consistency_checks(ident, exif, jpeg, fmt),
    )


def jpeg_trace(jpeg: Jpeg, model: str) -> JpegTrace:
    """``jpeg`` (a file's setting, :meth:`Jpeg.from_file`) against the known camera models'
    own tables (:func:`camtrace.data.simcam.camera_tables`) and ``model``'s."""
    known = camera_tables()
    own = known.get(model)
    return JpegTrace(
        quality=jpeg_quality_estimate(jpeg.qtables[0]),
        subsampling=jpeg.subsampling,
        cameras=tuple(label for label, j in known.items() if j.qtables == jpeg.qtables),
        match=None if own is None else own.qtables == jpeg.qtables,
    )


def consistency_checks(
    ident: Identification, exif: ExifCamera | None, jpeg: JpegTrace | None, fmt: str
) -> list[Check]:
    """The vote's strength, EXIF against the prediction, the JPEG tables against the
    predicted model's own: each a status and a sentence."""
    return [_vote_check(ident), _exif_check(ident.model, exif), _tables_check(ident.model, jpeg, fmt)]


def _vote_check(ident: Identification) -> Check:
    share = f"{ident.vote_share:.0%} of the {len(ident.patch_labels)} patches"
    if ident.vote_share < WEAK_VOTE:
        return Check(
            "weak vote",
            "warn",
            f"Only {share} vote for {ident.model}: a weak answer; a spliced region or a camera "
            "the detector never saw splits the votes (see the map).",
        )
    return Check("vote", "pass", f"{share} vote for {ident.model}.")


def _exif_check(model: str, exif: ExifCamera | None) -> Check:
    if exif is None:
        return Check(
            "EXIF",
            "info",
            "No EXIF Make/Model: the metadata was stripped (editing software, messaging apps), "
            "so nothing in the file names its camera.",
        )
    names = f"EXIF names {exif.make} {exif.model}".replace("  ", " ")
    if exif.label.lower() == model.lower():
        return Check("EXIF", "pass", f"{names}, the camera model the detector found.")
    return Check(
        "EXIF disagrees",
        "warn",
        f"{names} but the detector found {model}: the metadata was edited, or the pixels carry "
        "another camera's traces (spoofed, or misidentified).",
    )


def _tables_check(model: str, jpeg: JpegTrace | None, fmt: str) -> Check:
    if jpeg is None:
        return Check(
            "JPEG tables",
            "info",
            f"A {fmt} file has no JPEG quantisation tables to compare with a camera's.",
        )
    quality = f"The quantisation tables (IJG quality about {jpeg.quality})"
    if jpeg.match is None:
        return Check(
            "JPEG tables",
            "info",
            f"{quality} are not compared: camtrace knows the tables of SimCam's models only, "
            f"not {model}'s.",
        )
    if jpeg.match:
        return Check("JPEG tables", "pass", f"{quality} are exactly {model}'s own.")
    whose = f"; they are {', '.join(jpeg.cameras)}'s" if jpeg.cameras else ""
    return Check(
        "JPEG tables differ",
        "warn",
        f"{quality} are not {model}'s own{whose}: the file was saved again after the camera, "
        "or its pixels carry another camera's traces.",
    )


def failed_row(name: str, message: str) -> dict[str, str]:
    """The batch row of a file that could not be examined."""
    return {**dict.fromkeys(BATCH_COLUMNS, ""), "file": name, "flags": message}


def batch_csv(rows: list[dict[str, str]]) -> str:
    """The batch table as CSV text (:data:`BATCH_COLUMNS`)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=BATCH_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_batch_csv(rows: list[dict[str, str]], path: str | Path) -> Path:
    """Write :func:`batch_csv` atomically to ``path``."""
    write_text(path, batch_csv(rows))
    return Path(path)


def examination_report(exam: Examination, detector: str, card: dict[str, str]) -> str:
    """The one-page HTML report of an examination (self-contained, printable): the file and
    its digest, the detector and its card, the answer and the vote shares, the attribution
    map over the photo, and the consistency checks."""
    ident = exam.identification
    report = Report(f"Photo examination: {exam.name}", f"camera-model identification by {detector}")
    report.key_values(
        {
            "file": exam.name,
            "SHA-256": exam.sha256,
            "format": f"{exam.format}, {exam.width}x{exam.height} px, {exam.bytes:,} bytes",
            "EXIF Make / Model": f"{exam.exif.make} / {exam.exif.model}" if exam.exif else "none",
            "JPEG": (
                f"quality about {exam.jpeg.quality}, {exam.jpeg.subsampling}" if exam.jpeg else "none"
            ),
            "detector": detector,
            **card,
        },
        caption="The evidence and the detector",
    )
    report.heading(f"Answer: {ident.model} ({percent(ident.vote_share)} of the votes)")
    shares = {c: ident.scores[c] for c in sorted(ident.scores, key=lambda c: -ident.scores[c])}
    report.figure(
        bar_figure(shares, "Share of the patch votes per camera model", "share"),
        f"Majority vote over {len(ident.patch_labels)} patches (Bondi et al. 2017).",
    )
    if exam.blocks is not None:
        grid = exam.blocks
        report.figure(
            attribution_map_figure(
                load_rgb(exam.path, max_pixels=MAX_PIXELS),
                grid.labels,
                grid.positions,
                grid.size,
                exam.classes,
                grid.confidence,
                title=f"camera model per {grid.size}x{grid.size} block",
            ),
            "Attribution map (Bondi et al. 2017, Fig. 5): every block tinted by the camera "
            "model it votes for, faded where unsure; a region from another camera stands out.",
        )
    report.heading("Consistency checks")
    report.table(
        [{"check": c.name, "result": c.status, "why": c.sentence} for c in exam.checks],
        caption="Each check in a sentence",
    )
    return report.html()
