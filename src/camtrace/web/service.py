"""What the page asks of camtrace, one method per action, each a call into the public API
(:mod:`camtrace.workflows.examine`, :mod:`camtrace.workflows.camera_spoof`,
:mod:`camtrace.workflows.catalogue`); the long ones run as background jobs. Three hooks, one
function each, bring in the optional parts of camtrace when they are installed (the open-set
calibration, PRNU, the spoof detector) and say "not available" otherwise.
"""

from __future__ import annotations

import re
import secrets
import shutil
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from camtrace.data.codec import save_image
from camtrace.data.images import load_rgb
from camtrace.data.simcam import camera_tables
from camtrace.errors import CamtraceError
from camtrace.models import Detector
from camtrace.models.fingerprint import Fingerprint
from camtrace.schema import parse
from camtrace.web.jobs import Job, JobQueue, Report
from camtrace.web.uploads import MEDIA_TYPES, Limits, Photo, Store, display_name, sniff
from camtrace.workflows.camera_spoof import budget_eps, spoof_photo
from camtrace.workflows.catalogue import Catalogue
from camtrace.workflows.config import AttackSettings
from camtrace.workflows.examine import (
    MAX_PIXELS,
    Check,
    Examination,
    examination_report,
    examine,
    failed_row,
    write_batch_csv,
)

GRADIENT_METHODS = {"pgd": "PGD", "timifgsm": "TI-MI-FGSM"}
GENERATOR_PREFIX = "gen:"
KEEP_EXAMINATIONS = 1000


class NotFound(Exception):
    """A photo, job, spoof or batch this server does not hold (any more): answered 404."""


@dataclass(frozen=True)
class Upload:
    """A file as the browser sent it: its bytes and the name it gave (display only)."""

    file: BinaryIO
    name: str | None


@dataclass(frozen=True)
class Spoofed:
    """A finished spoof's files: the written image, its amplified difference, the name a
    download gets."""

    image: Path
    difference: Path
    media_type: str
    download: str


# -- the hooks: optional parts of camtrace, each one function ----------------------------------


def open_set_calibration(detector: Detector) -> Any:
    """The detector's open-set calibration (:mod:`camtrace.models.openset`, the sidecar
    beside its checkpoint) for :func:`examine`, or one line saying why there is none."""
    try:
        from camtrace.models.openset import detector_openset
    except ImportError:
        return "this camtrace has no open-set identification"
    return detector_openset(detector)


def prnu_check(exam: Examination, fingerprints: Sequence[Fingerprint]) -> Check:
    """The photo's sensor noise against the enrolled device fingerprints, read against the
    camera model its traces say (:func:`camtrace.workflows.spoof_check.prnu_check`: PCE,
    Goljan et al. 2009)."""
    try:
        from camtrace.workflows.spoof_check import prnu_check as check
    except ImportError:
        return Check("PRNU", "unavailable", "Not available in this camtrace (no PRNU check).")
    if not fingerprints:
        return Check(
            "PRNU",
            "unavailable",
            "No device fingerprint enrolled: put fingerprints (camtrace prnu enroll) in the "
            "--detectors folder to compare the sensor's own noise.",
        )
    rgb = load_rgb(exam.path, max_pixels=MAX_PIXELS)
    return check(rgb, list(fingerprints), exam.identification.nearest, exam.classes)


def spoof_detector_check(exam: Examination, spoof_detector: tuple[str, Detector] | None) -> Check:
    """The spoof detector's verdict on the photo's voting patches
    (:func:`camtrace.workflows.spoof_check.learned_verdict`, ``camtrace detect-spoof``)."""
    try:
        from camtrace.workflows.spoof_check import learned_verdict
    except ImportError:
        return Check(
            "spoof detector", "unavailable", "Not available in this camtrace (no spoof detector)."
        )
    if spoof_detector is None:
        return Check(
            "spoof detector",
            "unavailable",
            "No spoof detector on offer: train one (camtrace run spoof-detection) and put it in "
            "the --detectors folder.",
        )
    name, detector = spoof_detector
    verdict = learned_verdict(detector, Path(exam.path), name)
    if verdict.attacked:
        return Check("spoof detected", "warn", verdict.sentence)
    return Check("spoof detector", "pass", verdict.sentence)


# -- the service --------------------------------------------------------------------------------


class Service:
    """The page's actions over one catalogue of detectors, one upload store and one queue."""

    def __init__(self, catalogue: Catalogue, store: Store, jobs: JobQueue) -> None:
        self.catalogue, self.store, self.jobs = catalogue, store, jobs
        self.limits: Limits = store.limits
        self._exams: OrderedDict[tuple[str, str], Examination] = OrderedDict()
        self._spoofs: dict[str, Spoofed] = {}
        self._batches: dict[str, Path] = {}
        self._openset: dict[str, Any] = {}
        self._lock = threading.Lock()

    # detectors

    def default_detector(self) -> str:
        if not self.catalogue.detectors:
            raise CamtraceError("no detector on offer; give --detectors DIR with checkpoints")
        return next(iter(self.catalogue.detectors))

    def detectors(self) -> list[dict[str, Any]]:
        """Each detector on offer: its key, card summary, classes, the classes whose JPEG
        tables camtrace knows, and the generators that can spoof it."""
        known = camera_tables()
        out = []
        for key, offer in self.catalogue.detectors.items():
            classes = offer.classes
            generators = {
                GENERATOR_PREFIX + g.key: g for g in self.catalogue.generators_for(classes)
            }
            out.append(
                {
                    "key": key,
                    "summary": offer.summary(),
                    "classes": classes,
                    "tables": [c for c in classes if c in known],
                    "methods": GRADIENT_METHODS
                    | {k: f"{g.card['method']} generator {g.key}" for k, g in generators.items()},
                    "generator_targets": {k: g.card["target"] for k, g in generators.items()},
                }
            )
        return out

    # photos

    def add_photos(self, uploads: Sequence[Upload]) -> list[dict[str, Any]]:
        """Store each photo after checking it decodes; a bad file is one line, the rest go
        on."""
        out = []
        for upload in uploads:
            name = display_name(upload.name)
            try:
                photo = self.store.add_photo(upload.file, name)
                self._decodes(photo)
            except CamtraceError as e:
                out.append({"name": name, "error": str(e)})
                continue
            out.append({"id": photo.id, "name": photo.name, "format": photo.format})
        return out

    def _decodes(self, photo: Photo) -> None:
        """Refuse (and forget) a photo that does not decode in full: truncated, corrupt, a
        decompression bomb."""
        try:
            load_rgb(photo.path, max_pixels=self.limits.max_pixels)
        except CamtraceError as e:
            self.store.drop(photo.id)
            raise CamtraceError(str(e).replace(str(photo.path), photo.name)) from None

    def photo(self, photo_id: str) -> Photo:
        try:
            return self.store.photo(photo_id)
        except KeyError:
            raise NotFound(
                f"photo {photo_id}: not on this server (it was removed, or the server "
                "restarted); upload it again"
            ) from None

    def display(self, photo_id: str) -> tuple[Path, str]:
        """The photo as a browser shows it: the upload itself when a browser reads its
        format, else a PNG of the pixels the detector sees."""
        photo = self.photo(photo_id)
        if photo.format in MEDIA_TYPES:
            return photo.path, MEDIA_TYPES[photo.format]
        shown = photo.folder / "display.png"
        with self._lock:
            if not shown.is_file():
                save_image(shown, load_rgb(photo.path, max_pixels=self.limits.max_pixels))
        return shown, "image/png"

    def examination(self, photo_id: str, detector: str) -> Examination:
        """The photo examined by the detector (kept: the report and the page reuse it)."""
        photo = self.photo(photo_id)
        key = (photo.id, detector)
        with self._lock:
            if key in self._exams:
                return self._exams[key]
        exam = self._examine(photo.path, photo.name, detector, blocks=True)
        with self._lock:
            self._exams[key] = exam
            while len(self._exams) > KEEP_EXAMINATIONS:
                self._exams.popitem(last=False)
        return exam

    def _examine(self, path: Path, name: str, detector: str, blocks: bool) -> Examination:
        det = self.catalogue.detector(detector)
        with self._lock:
            if detector not in self._openset:
                self._openset[detector] = open_set_calibration(det)
        exam = examine(
            det,
            path,
            name,
            blocks=blocks,
            max_pixels=self.limits.max_pixels,
            openset=self._openset[detector],
        )
        exam.checks += [
            prnu_check(exam, self.catalogue.fingerprints),
            spoof_detector_check(exam, self._spoof_detector()),
        ]
        return exam

    def _spoof_detector(self) -> tuple[str, Detector] | None:
        """The first spoof detector on offer (the zoo's, else the folder's), loaded."""
        key = next(iter(self.catalogue.spoof_detectors), None)
        return None if key is None else (key, self.catalogue.detector(key, "spoof detector"))

    def examine_job(self, photo_id: str, detector: str) -> Job:
        self.photo(photo_id)
        self.catalogue.offer(detector)

        def work(report: Report) -> dict[str, Any]:
            report(0.1, f"identifying with {detector}, labelling every block")
            return page_view(self.examination(photo_id, detector), detector)

        return self.jobs.submit("examine", work)

    def identify(self, upload: Upload, detector: str) -> dict[str, Any]:
        """One photo identified at once (no block map), for scripts and the load test; the
        upload is removed afterwards."""
        self.catalogue.offer(detector)
        name = display_name(upload.name)
        token, folder, kind = self.store.receive(upload.file, name)
        try:
            if kind == "zip":
                raise CamtraceError(f"{name}: a zip archive; identify photos one at a time")
            return page_view(self._examine(folder / "upload", name, detector, False), detector)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def report(self, photo_id: str, detector: str) -> str:
        """The photo's one-page HTML report."""
        exam = self.examination(photo_id, detector)
        return examination_report(exam, detector, self.catalogue.offer(detector).summary())

    # spoof

    def spoof_job(
        self,
        photo_id: str,
        detector: str,
        target: str,
        method: str,
        budget: Literal["eps", "psnr"],
        value: float,
        output: Literal["png", "jpeg"],
    ) -> Job:
        """Spoof the photo toward ``target`` in the background; the job's result has the
        numbers and the files' addresses."""
        photo = self.photo(photo_id)
        det = self.catalogue.detector(detector)
        if output not in ("png", "jpeg"):
            raise CamtraceError(f"output '{output}': give png or jpeg")
        settings = self._settings(det, target, method, budget, value, output == "jpeg")
        sid = secrets.token_hex(8)
        suffix = ".png" if output == "png" else ".jpg"
        out, difference = photo.folder / f"spoof-{sid}{suffix}", photo.folder / f"diff-{sid}.png"
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(photo.name).stem)[:80] or "photo"
        download = f"{stem}_as_{settings.target}{suffix}"

        def work(report: Report) -> dict[str, Any]:
            rounds = settings.rounds
            report(0.05, f"attacking the voting patches (up to {rounds} rounds)")

            def on_round(done: int, total: int) -> None:
                report(0.05 + 0.85 * done / total, f"attack round {done} of at most {total} done")

            spoofed = spoof_photo(
                det, photo.path, out, settings, difference=difference, on_round=on_round
            )
            media = "image/png" if output == "png" else "image/jpeg"
            with self._lock:
                self._spoofs[sid] = Spoofed(out, difference, media, download)
            result = spoofed.to_dict()
            result["before"]["path"], result["after"]["path"] = photo.name, download
            return {**result, "path": photo.name, "saved": download, "id": sid}

        return self.jobs.submit("spoof", work)

    def _settings(
        self, det: Detector, target: str, method: str, budget: str, value: float, jpeg: bool
    ) -> AttackSettings:
        """The attack: a generator's (its own target), or a gradient attack within the budget,
        its gradient taken through the written JPEG too when the output is one."""
        if method.startswith(GENERATOR_PREFIX):
            offer = self.catalogue.offer(method.removeprefix(GENERATOR_PREFIX), "generator")
            given = {"method": offer.card["method"], "generator": offer.source}
            target = offer.card["target"]
        elif method in GRADIENT_METHODS:
            eps = budget_eps(budget, value)  # type: ignore[arg-type]
            given = {"method": method, "eps": eps, "through_jpeg": jpeg}
        else:
            raise CamtraceError(f"method '{method}': give one of {', '.join(GRADIENT_METHODS)}")
        if target not in det.classes:
            raise CamtraceError(
                f"target '{target}': not a class of this detector; give one of "
                f"{', '.join(det.classes)}"
            )
        return parse(AttackSettings, {**given, "target": target}, "spoof")

    def spoofed(self, spoof_id: str) -> Spoofed:
        with self._lock:
            if spoof_id not in self._spoofs:
                raise NotFound(f"spoof {spoof_id}: not on this server; run the spoof again")
            return self._spoofs[spoof_id]

    # batch

    def batch_job(self, uploads: Sequence[Upload], detector: str) -> Job:
        """Photos (a folder's files, or zips of them) examined in the background into the
        batch table; a zip that could write outside its folder refuses the whole batch."""
        self.catalogue.offer(detector)
        token, folder = self.store.folder()
        files: list[tuple[str, Path]] = []
        refused: list[dict[str, str]] = []
        try:
            for upload in uploads:
                name = display_name(upload.name)
                try:
                    _, got, kind = self.store.receive(upload.file, name)
                except CamtraceError as e:
                    refused.append(failed_row(name, str(e)))
                    continue
                if kind == "zip":
                    files += self.store.extract(got / "upload", name, folder)
                else:
                    files.append((name, got / "upload"))
        except CamtraceError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if not files and not refused:
            raise CamtraceError("batch: no files; choose a folder of photos or a zip")

        def work(report: Report) -> dict[str, Any]:
            rows = list(refused)
            for n, (name, path) in enumerate(files):
                report(n / len(files), f"{n + 1} of {len(files)}: {name}")
                try:
                    kind = sniff(path, name)
                    if kind == "zip":
                        raise CamtraceError(f"{name}: a zip inside the archive; unpack it first")
                    rows.append(self._examine(path, name, detector, blocks=False).row())
                except CamtraceError as e:
                    rows.append(failed_row(name, str(e)))
            write_batch_csv(rows, folder / "batch.csv")
            with self._lock:
                self._batches[token] = folder / "batch.csv"
            return {"id": token, "rows": rows}

        return self.jobs.submit("batch", work)

    def batch_csv(self, batch_id: str) -> Path:
        with self._lock:
            if batch_id not in self._batches:
                raise NotFound(f"batch {batch_id}: not on this server; run the batch again")
            return self._batches[batch_id]


def page_view(exam: Examination, detector: str) -> dict[str, Any]:
    """The examination as the page shows it: its dict, the detector and the answer in words
    (the predicted model, or "unknown model (nearest ...)")."""
    return {**exam.to_dict(), "detector": detector, "answer": exam.answer}
