"""The ``openset:`` section's work: each detector of the run calibrated for open-set
identification on the run's splits (:func:`~camtrace.models.calibration.calibrate_openset`),
then its known evaluation images told from camera models held out of training.

The held-out models are two SimCam presets shot with the data section's scenes, size and
seed: ``unseen`` (other makes, other processing) and ``many`` (models drawn inside the known
ones' ranges). The first half of the ``many`` models chooses each detector's score, the one
of largest AUROC (:data:`SELECTION`); the second half and the ``unseen`` preset measure it
(:data:`TESTS`), so no reported number was used to pick the score. Each detector's
calibration, deciding with its chosen score, is written to ``runs/<name>/openset/`` (the
shipped zoo's sidecars are these files).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from camtrace.data.patch_store import PatchStore
from camtrace.data.patches import PatchProtocol
from camtrace.evaluation.openset import auroc, operating_point, roc
from camtrace.models.calibration import ScoredImages, calibrate_openset, score_images
from camtrace.models.checkpoint import load_detector
from camtrace.models.openset import save_openset, sidecar_path
from camtrace.workflows.config import ExperimentConfig, OpenSetConfig
from camtrace.workflows.identification import Clock, DetectorSpec, preset_patches

SELECTION = "many, first half"  # chooses each detector's score
TESTS = ("unseen", "many, second half")  # measure it
OPENSET_DIR = "openset"

HeldOut = dict[str, tuple[PatchStore, np.ndarray]]


def held_out(
    config: ExperimentConfig, section: OpenSetConfig, protocol: PatchProtocol, progress: bool
) -> HeldOut:
    """The held-out camera models' patches cut with ``protocol``: the unseen preset's, and
    the many preset's split into its first and second half of models."""
    seed = config.seed
    unseen = preset_patches(
        config,
        section.unseen.preset,
        section.unseen.shots,
        protocol,
        seed,
        progress,
        "openset.unseen",
    )
    many = preset_patches(
        config, section.many.preset, section.many.shots, protocol, seed, progress, "openset.many"
    )
    half = math.ceil(len(many.classes) / 2)
    return {
        "unseen": (unseen, unseen.indices()),
        SELECTION: (many, many.indices(None, many.classes[:half])),
        TESTS[1]: (many, many.indices(None, many.classes[half:])),
    }


def _described(store: PatchStore, indices: np.ndarray, preset: str) -> dict[str, Any]:
    images = np.asarray(store.meta["image"])[indices]
    models = np.unique(np.asarray(store.meta["model"])[indices])
    return {"preset": preset, "models": models.tolist(), "images": len(np.unique(images))}


def measure(
    known: ScoredImages, unknown: dict[str, ScoredImages], thresholds: dict[str, float]
) -> dict[str, Any]:
    """Every score's AUROC against each held-out set, the score of largest AUROC on the
    selection set, and every score's operating point at its threshold on the test sets."""
    aurocs = {
        score: {name: auroc(values, unknown[name].scores[score]) for name in unknown}
        for score, values in known.scores.items()
    }
    chosen = max(aurocs, key=lambda score: aurocs[score][SELECTION])
    operating = {
        score: operating_point(
            values,
            known.correct,
            {name: unknown[name].scores[score] for name in TESTS},
            thresholds[score],
        )
        for score, values in known.scores.items()
    }
    curves = {name: roc(known.scores[chosen], unknown[name].scores[chosen]) for name in TESTS}
    return {"score": chosen, "auroc": aurocs, "operating": operating, "roc": curves}


def run_openset(
    section: OpenSetConfig,
    config: ExperimentConfig,
    specs: list[DetectorSpec],
    detectors: dict[str, dict[str, Any]],
    run_dir: Path,
    clock: Clock,
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Calibrate, score and measure every detector of the run; returns the metrics."""
    stores: dict[PatchProtocol, HeldOut] = {}
    presets = {"unseen": section.unseen.preset, SELECTION: section.many.preset}
    out: dict[str, Any] = {}
    for spec in specs:
        if spec.protocol not in stores:
            stores[spec.protocol] = held_out(config, section, spec.protocol, progress)
            clock.lap(f"openset: held-out models {spec.protocol.name} {spec.protocol.size}px")
        d = detectors[spec.name]
        store = PatchStore.open(d["patch_store"])
        openset = calibrate_openset(
            d["checkpoint"], store, section.frr, section.cloud_images, config.seed, progress
        )
        detector = load_detector(d["checkpoint"])
        split = config.evaluate.split
        known = score_images(detector, store, store.indices(split), openset.cloud, progress)
        unknown = {
            name: score_images(detector, s, idx, openset.cloud, progress)
            for name, (s, idx) in stores[spec.protocol].items()
        }
        result = measure(known, unknown, openset.thresholds)
        auroc_on = {score: a[SELECTION] for score, a in result["auroc"].items()}
        selection = {"by": "AUROC", "on": SELECTION, "auroc": auroc_on}
        openset = replace(openset.with_score(result["score"]), selection=selection)
        path = save_openset(openset, run_dir / OPENSET_DIR / sidecar_path(d["checkpoint"]).name)
        op = result["operating"][result["score"]]
        log(
            f"openset {spec.name}: {result['score']}, AUROC "
            + ", ".join(f"{n} {result['auroc'][result['score']][n]:.3f}" for n in TESTS)
            + f"; FRR {op['frr']:.1%} on {split}, accuracy {op['accuracy']:.1%}"
        )
        out[spec.name] = {
            **result,
            "thresholds": openset.thresholds,
            "calibration": str(path),
            "known": {"split": split, "images": len(known.image)},
            "held_out": {
                name: _described(s, idx, presets.get(name, section.many.preset))
                for name, (s, idx) in stores[spec.protocol].items()
            },
        }
        clock.lap(f"openset {spec.name}")
    return {"frr": section.frr, "selection": SELECTION, "tests": list(TESTS), "detectors": out}
