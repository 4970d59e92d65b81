"""A photo examined for an analyst's case file: which camera model shot it (Bondi et al.
2017's majority vote over patches; "unknown" when the detector's open-set calibration rejects
the evidence), where (every grid block labelled: the attribution map of Bondi's Fig. 5, which
exposes splicing), and whether the file agrees with itself: what its header and pixels say
against camera traces, its EXIF Make/Model and its JPEG quantisation tables against the
predicted camera model's own (known for SimCam's models). The batch table of many photos and
its CSV; the one-page report.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from camtrace.data.codec import Jpeg
from camtrace.data.images import load_photo, load_rgb
from camtrace.data.layouts import ExifCamera, read_exif_camera
from camtrace.data.simcam import camera_tables
from camtrace.errors import CamtraceError
from camtrace.evaluation.traces import jpeg_quality_estimate
from camtrace.io import write_text
from camtrace.models import Detector
from camtrace.models.inference import (
    UNKNOWN,
    Identification,
    block_map,
    identify,
    patch_protocol,
)
from camtrace.models.zoo import sha256_of
from camtrace.workflows.plots import attribution_map_figure, bar_figure, class_colors
from camtrace.workflows.report import Report, percent

if TYPE_CHECKING:
    from camtrace.models.openset import OpenSet

MAX_PIXELS = 100_000_000  # load_rgb's decompression-bomb limit: a 100 MP header is refused
WEAK_VOTE = 0.5  # below this share of the votes the answer is flagged as weak
JPEG_FORMATS = ("JPEG", "MPO")  # Pillow's formats that carry JPEG quantisation tables
REPORT_WIDTH = 1024  # px: the report's map is a page wide, not the photo's full size
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
    class index ``labels`` (M,) and the winner's ``score`` in [0, 1] (:func:`block_scores`)."""

    size: int
    labels: np.ndarray
    positions: np.ndarray
    score: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "labels": self.labels.astype(int).tolist(),
            "positions": self.positions.astype(int).tolist(),
            "score": np.round(self.score.astype(float), 3).tolist(),
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
            "colours": [
                "#{:02x}{:02x}{:02x}".format(*np.rint(c[:3] * 255).astype(int)) for c in colours
            ],
            "identification": self.identification.to_dict(),
            "exif": None if self.exif is None else vars(self.exif),
            "jpeg": None if self.jpeg is None else self.jpeg.to_dict(),
            "blocks": None if self.blocks is None else self.blocks.to_dict(),
            "checks": [c.to_dict() for c in self.checks],
            "flags": self.flags,
        }

    @property
    def answer(self) -> str:
        """The answer in words: the model, or "unknown model (nearest ...)"."""
        ident = self.identification
        known = ident.model != UNKNOWN
        return ident.model if known else f"unknown model (nearest {ident.nearest})"

    def row(self) -> dict[str, str]:
        """The photo's row of the batch table (:data:`BATCH_COLUMNS`)."""
        ident = self.identification
        return {
            "file": self.name,
            "prediction": self.answer,
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
    openset: OpenSet | str | None = None,
) -> Examination:
    """Examine the photo at ``path``: ``identify`` (majority vote over the detector's K
    patches; with ``openset``, the detector's calibration, "unknown" when it rejects the
    evidence, and a string says why there is none), the block map when ``blocks``, EXIF
    Make/Model, the JPEG setting and the consistency checks. Errors name the photo as
    ``name`` (default: the path)."""
    path = Path(path)
    name = name or str(path)
    calibration, no_open_set = (None, openset) if isinstance(openset, str) else (openset, None)
    try:
        photo = load_photo(path, min_size=patch_protocol(detector).size, max_pixels=max_pixels)
        with Image.open(path) as im:
            fmt = str(im.format)
        exif = read_exif_camera(path)
        ident = identify(detector, photo, k=k, openset=calibration)
        jpeg = jpeg_trace(Jpeg.from_file(path), ident.nearest) if fmt in JPEG_FORMATS else None
    except CamtraceError as e:
        raise CamtraceError(str(e).replace(str(path), name)) from None
    ident.path, rgb = name, photo.rgb
    grid = None
    if blocks:
        labels, positions, confidence = block_map(detector, rgb)
        size = patch_protocol(detector).size
        grid = BlockMap(size, labels, positions, block_scores(detector, confidence))
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
        checks=consistency_checks(ident, exif, jpeg, fmt, no_open_set),
    )


def block_scores(detector: Detector, confidence: np.ndarray) -> np.ndarray:
    """Each block's winner on a 0-1 scale from :func:`block_map`'s ``confidence`` (the
    winner's share of the block's scores): its soft-max probability as it is, or with Bondi's
    one-vs-one SVMs the share of its C - 1 duels the winner won, since the C (C - 1) / 2
    votes of a block add up to that total: votes / (C - 1) = confidence C / 2."""
    if getattr(detector, "svm", None) is None:
        return confidence
    return np.clip(confidence * detector.num_classes / 2, 0.0, 1.0)


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
    ident: Identification,
    exif: ExifCamera | None,
    jpeg: JpegTrace | None,
    fmt: str,
    no_open_set: str | None = None,
) -> list[Check]:
    """The vote's strength, the open-set answer (or ``no_open_set``: why there is none), what
    the file says against camera traces, EXIF against the prediction, the JPEG tables against
    the predicted model's own: each a status and a sentence."""
    model = ident.nearest
    return [
        _vote_check(ident),
        _open_set_check(ident, no_open_set),
        *_input_checks(ident),
        _exif_check(model, exif),
        _tables_check(model, jpeg, fmt),
    ]


def _vote_check(ident: Identification) -> Check:
    share = f"{ident.vote_share:.0%} of the {len(ident.patch_labels)} patches"
    if ident.vote_share < WEAK_VOTE:
        return Check(
            "weak vote",
            "warn",
            f"Only {share} vote for {ident.nearest}: a weak answer; a spliced region or a camera "
            "the detector never saw splits the votes (see the map).",
        )
    return Check("vote", "pass", f"{share} vote for {ident.nearest}.")


def _open_set_check(ident: Identification, no_open_set: str | None) -> Check:
    decision = ident.open_set
    if decision is None:
        why = no_open_set or (
            "no open-set calibration given, so a camera the detector never saw is named as "
            "the closest model it knows"
        )
        return Check("open set", "unavailable", f"Not checked: {why}.")
    against = (
        f"its {decision.score} score {decision.value:.3g} against the threshold "
        f"{decision.threshold:.3g}, which {decision.frr:.0%} of known photos fall below"
    )
    if decision.known:
        return Check("open set", "pass", f"The evidence is like a known model's ({against}).")
    return Check(
        UNKNOWN + " model",
        "warn",
        f"The evidence is unlike every model the detector knows ({against}): unknown model; "
        f"the nearest is {ident.nearest}.",
    )


def _input_checks(ident: Identification) -> list[Check]:
    return [
        Check(
            "no camera traces", "warn", f"{w[:1].upper()}{w[1:]}; an answer from it is no evidence."
        )
        for w in ident.warnings
    ]


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


def reduced(rgb: np.ndarray, block: int, width: int = REPORT_WIDTH) -> tuple[np.ndarray, int]:
    """The photo shrunk for a page-wide figure: each f x f square averaged, f the largest
    power of two dividing ``block`` that leaves it at least ``width`` pixels wide."""
    f = 1
    while block % (2 * f) == 0 and rgb.shape[1] // (2 * f) >= width:
        f *= 2
    h, w = rgb.shape[0] // f * f, rgb.shape[1] // f * f
    small = rgb[:h, :w].reshape(h // f, f, w // f, f, 3).mean(axis=(1, 3))
    return np.rint(small).astype(np.uint8), f


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
                f"quality about {exam.jpeg.quality}, {exam.jpeg.subsampling}"
                if exam.jpeg
                else "none"
            ),
            "detector": detector,
            **card,
        },
        caption="The evidence and the detector",
    )
    report.heading(f"Answer: {exam.answer} ({percent(ident.vote_share)} of the votes)")
    shares = {c: ident.scores[c] for c in sorted(ident.scores, key=lambda c: -ident.scores[c])}
    report.figure(
        bar_figure(shares, "Share of the patch votes per camera model", "share"),
        f"Majority vote over {len(ident.patch_labels)} patches (Bondi et al. 2017).",
    )
    if exam.blocks is not None:
        grid = exam.blocks
        image, f = reduced(load_rgb(exam.path, max_pixels=MAX_PIXELS), grid.size)
        report.figure(
            attribution_map_figure(
                image,
                grid.labels,
                grid.positions // f,
                grid.size // f,
                exam.classes,
                grid.score,
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
