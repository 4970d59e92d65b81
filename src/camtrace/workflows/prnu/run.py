"""The ``prnu:`` section of a run: device-level identification by PRNU on the run's data.

Scene-disjoint, every device on both sides: each device's fingerprint is enrolled from its
photos of the scenes outside the evaluation split (the Bondi split's evaluation scenes;
fingerprints made from the very scenes a photo shows would share its content), and every
photo of the evaluation scenes, of every device, is matched against every fingerprint. The
answer for a photo is the device of the highest PCE (closed set), and a photo matches a
device when the PCE reaches the threshold (open set: Goljan 2009's 60). The ROC and its AUC
take the photo's own device as the positive and every other device as a negative; the
negatives are also split into the devices of the same camera model (which a model-level
detector cannot tell apart) and those of other models.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from camtrace.data.manifest import Manifest, Record
from camtrace.errors import CamtraceError
from camtrace.io import write_text
from camtrace.models.fingerprint import Fingerprint, load_fingerprint, make_card, save_fingerprint
from camtrace.models.prnu import ResidualSettings
from camtrace.workflows.config import PrnuConfig
from camtrace.workflows.prnu.batch import enrol_devices, pce_table

FINGERPRINTS_DIR = "prnu/fingerprints"
PCE_TABLE = "prnu/pce.csv"
ROC_POINTS = 200


def eval_scenes(manifest: Manifest) -> set[str]:
    """The scenes of the evaluation split."""
    scenes = {r.scene for r in manifest if r.split == "eval"}
    if not scenes:
        raise CamtraceError(
            "prnu: the split has no evaluation photos with a scene id; use a split with an "
            "eval split (split.protocol bondi or random)"
        )
    return scenes


def by_device(records: Sequence[Record], limit: int | None) -> dict[str, list[Record]]:
    """Records per device (devices sorted), each device's first ``limit`` by shot."""
    out: dict[str, list[Record]] = {}
    for r in sorted(records, key=lambda r: (r.device, r.shot, r.path)):
        out.setdefault(r.device, []).append(r)
    return {d: rows[:limit] for d, rows in out.items()}


def enrolment(manifest: Manifest, photos: int) -> dict[str, list[Record]]:
    """Each device's first ``photos`` photos of scenes outside the evaluation split."""
    held_out = eval_scenes(manifest)
    groups = by_device([r for r in manifest if r.scene not in held_out], photos)
    missing = sorted({r.device for r in manifest} - set(groups))
    if missing:
        raise CamtraceError(
            f"prnu: {missing[0]} has no photo outside the evaluation scenes to enrol; lower "
            "split.eval_scene_frac or shoot more scenes (data.shots)"
        )
    return groups


def device_fingerprints(
    manifest: Manifest,
    groups: Mapping[str, Sequence[Record]],
    settings: ResidualSettings,
    folder: Path,
    workers: int = 2,
    progress: bool = False,
) -> dict[str, Fingerprint]:
    """Each device's fingerprint from its photos, in ``folder/<device>.safetensors``; a file
    made from the same photos with the same settings is read instead of made again."""
    sources = {d: _digest(rows) for d, rows in groups.items()}
    found = {d: _cached(folder / f"{d}.safetensors", sources[d], settings) for d in groups}
    todo = {d: [manifest.abspath(r) for r in rows] for d, rows in groups.items() if not found[d]}
    for device, (k, count, size) in enrol_devices(todo, settings, workers, progress).items():
        card = make_card(device, count, size, settings, sources=sources[device])
        path = save_fingerprint(folder / f"{device}.safetensors", k, card)
        found[device] = Fingerprint(k, card, path)
    return {d: found[d] for d in groups}  # type: ignore[misc]


def _digest(rows: Sequence[Record]) -> str:
    return hashlib.sha256("\n".join(r.path for r in rows).encode()).hexdigest()


def _cached(path: Path, sources: str, settings: ResidualSettings) -> Fingerprint | None:
    if not path.is_file():
        return None
    fp = load_fingerprint(path)
    return fp if fp.card.get("sources") == sources and fp.settings == settings else None


def settings_of(section: PrnuConfig) -> ResidualSettings:
    return ResidualSettings(levels=section.levels, sigma=section.sigma)


def run_prnu(
    section: PrnuConfig,
    manifest: Manifest,
    run_dir: Path,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Enrol every device, match every evaluation-scene photo against every device; returns
    the metrics (identification, detection at the threshold, ROC) and, for the report,
    ``probes`` (each photo's device and PCE against every device), which go to
    ``prnu/pce.csv`` in the run folder instead of metrics.json."""
    settings = settings_of(section)
    groups = enrolment(manifest, section.enrol)
    devices = list(groups)
    fingerprints = device_fingerprints(
        manifest, groups, settings, run_dir / FINGERPRINTS_DIR, section.workers, progress
    )
    log(f"prnu: {len(devices)} fingerprints from {sum(map(len, groups.values()))} photos")
    held_out = eval_scenes(manifest)
    probes = [
        r
        for rows in by_device([r for r in manifest if r.scene in held_out], section.photos).values()
        for r in rows
    ]
    stack = np.stack([fingerprints[d].k for d in devices])
    pce = pce_table(
        [manifest.abspath(r) for r in probes],
        stack,
        settings,
        section.neighbourhood,
        section.workers,
        progress,
    )
    model = {r.device: r.model for r in manifest}
    truth = np.array([devices.index(r.device) for r in probes])
    rows = [
        [Path(r.path).name, r.device, *(f"{v:.2f}" for v in row)] for r, row in zip(probes, pce)
    ]
    write_text(run_dir / PCE_TABLE, _csv([["photo", "device", *devices], *rows]))
    return {
        "threshold": section.threshold,
        "neighbourhood": section.neighbourhood,
        "residual": settings.to_dict(),
        "devices": devices,
        "models": [model[d] for d in devices],
        "fingerprints": {
            d: {
                "photos": fingerprints[d].card["images"],
                "file": f"{FINGERPRINTS_DIR}/{d}.safetensors",
            }
            for d in devices
        },
        "eval_scenes": len(held_out),
        "image_size": list(stack.shape[1:]),
        **scores(pce, truth, [model[d] for d in devices], section.threshold),
        "pce_table": PCE_TABLE,
        "probes": [{"device": r.device, "pce": row} for r, row in zip(probes, pce)],
    }


def scores(
    pce: np.ndarray, truth: np.ndarray, models: Sequence[str], threshold: float
) -> dict[str, Any]:
    """Identification and detection from the PCE of photos (P, D) against devices whose
    models are ``models``, the photos' true devices ``truth`` (P,)."""
    models = np.asarray(models)
    own, sibling, other = pair_masks(truth, models)
    best = pce.argmax(axis=1)
    fpr, tpr, _ = roc_curve(own.ravel(), pce.ravel())
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(ROC_POINTS, len(fpr))).round().astype(int))

    def rate(mask: np.ndarray) -> float | None:
        return float((pce[mask] >= threshold).mean()) if mask.any() else None

    def auc(negatives: np.ndarray) -> float | None:
        mask = own | negatives
        labels = own[mask]
        return float(roc_auc_score(labels, pce[mask])) if 0 < labels.sum() < len(labels) else None

    return {
        "photos": len(pce),
        "identification": {
            "accuracy": float((best == truth).mean()),
            "correct": int((best == truth).sum()),
            "model_accuracy": float((models[best] == models[truth]).mean()),
        },
        "detection": {
            "tpr": rate(own),
            "fpr": rate(~own),
            "fpr_same_model": rate(sibling),
            "fpr_other_models": rate(other),
            "auc": auc(~own),
            "auc_same_model": auc(sibling),
        },
        "pce": {
            name: _summary(pce[mask])
            for name, mask in (("own", own), ("same_model", sibling), ("other_models", other))
        },
        "roc": {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()},
    }


def pair_masks(truth: np.ndarray, models: Sequence[str]) -> tuple[np.ndarray, ...]:
    """Masks (P, D) of the photo-fingerprint pairs: the photo's own device, the other devices
    of its camera model, the devices of other models."""
    models = np.asarray(models)
    own = np.zeros((len(truth), len(models)), bool)
    own[np.arange(len(truth)), truth] = True
    sibling = (models[None, :] == models[truth][:, None]) & ~own
    return own, sibling, ~own & ~sibling


def _csv(rows: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _summary(values: np.ndarray) -> dict[str, float | int] | None:
    if values.size == 0:
        return None
    q = np.percentile(values, [5, 50, 95])
    return {"n": int(values.size), "p5": float(q[0]), "median": float(q[1]), "p95": float(q[2])}
