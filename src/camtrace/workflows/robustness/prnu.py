"""PRNU in the robustness matrix (``robustness.prnu``): does an attack remove the source
device's PRNU, or add the target device's?

Whole photos, not the matrix's patches: the PCE grows with the pixels compared (a correlation
``rho`` over ``N`` pixels gives a PCE near ``N rho^2``), and a 64x64 patch holds 1/48 of a
384x512 photo's pixels, so even a clean patch scores at the level of chance against its own
device. Each cell of the matrix (its attack, eps, parameters and precision; a generative
column's trained generators) therefore spoofs whole evaluation photos as camtrace spoofs a
photo (:func:`~camtrace.workflows.spoof.attack_image`, Chen 2019 Sec. 3.4: gradient attacks on
the voting patches, a generator on every block), toward another camera model (the next one
after the photo's in class order; a generator: its target; LLCM: the class it picks), and the
photo as written (uint8) is tested:

- against its source device's fingerprint, on the whole photo (what an analyst tests) and on
  the attacked blocks alone beside the clean photo's same blocks (what the attack did to the
  PRNU where it acted);
- against the devices of the camera model the detector now reads it as: a model-level spoof
  would have to add one of their fingerprints to pass.

A spoof (read as another model than its own) is caught when the photo still matches its source
device and no device of the model it is read as. Fingerprints: each device's photos of the
scenes outside the evaluation split (``workflows/prnu/run.py``), shared with a ``prnu:``
section of the same run. The matrix's numbers are computed before and never read here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camtrace.attacks import make_attack
from camtrace.attacks.base import Attack
from camtrace.attacks.generative import METHODS
from camtrace.data.images import load_rgb
from camtrace.data.manifest import Manifest, Record
from camtrace.data.patches import grid_positions
from camtrace.models.base import Detector
from camtrace.models.checkpoint import load_detector
from camtrace.models.inference import patch_protocol
from camtrace.models.prnu import ResidualSettings, intensity, match_pce, noise_residual
from camtrace.workflows.config import RobustnessConfig
from camtrace.workflows.prnu.run import FINGERPRINTS_DIR, device_fingerprints, enrolment
from camtrace.workflows.robustness.matrix import Cell, Generators, attack_kwargs, matrix_cells
from camtrace.workflows.spoof import attack_image


def photos_to_spoof(manifest: Manifest, photos: int) -> list[Record]:
    """One evaluation photo of each of the first ``photos`` camera models, the k-th model's
    from its k-th evaluation scene (in shot order), so the photos show different scenes."""
    out = []
    for k, model in enumerate(manifest.models[:photos]):
        rows = sorted((r for r in manifest if r.model == model and r.split == "eval"), key=_shot)
        if rows:
            out.append(rows[k % len(rows)])
    return out


def _shot(r: Record) -> tuple[str, str]:
    return r.shot, r.path


def attacked_blocks(clean: np.ndarray, adv: np.ndarray, size: int) -> np.ndarray:
    """(H, W) bool: the ``size`` grid blocks in which the attack changed a pixel."""
    region = np.zeros(clean.shape[:2], bool)
    for y, x in grid_positions(clean.shape[0], clean.shape[1], size).tolist():
        if np.any(clean[y : y + size, x : x + size] != adv[y : y + size, x : x + size]):
            region[y : y + size, x : x + size] = True
    return region


class Tester:
    """Photos' PCE against the run's fingerprints (F, H, W), on the whole photo or a region."""

    def __init__(self, fingerprints: np.ndarray, settings: ResidualSettings) -> None:
        self.fingerprints, self.settings = fingerprints, settings

    def traces(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A photo's noise residual and intensity, what its tests need."""
        return noise_residual(rgb[None], self.settings)[0], intensity(rgb[None])[0]

    def pce(
        self,
        traces: tuple[np.ndarray, np.ndarray],
        which: Sequence[int],
        region: np.ndarray | None = None,
    ) -> np.ndarray:
        """The PCE of a photo's ``traces`` against fingerprints ``which``."""
        stack = self.fingerprints[list(which)]
        return match_pce(*traces, stack, region=region).pce if len(stack) else np.zeros(0)


def cell_attack(
    cell: Cell, classes: Sequence[str], source: str, seed: int
) -> tuple[Attack, str | None] | None:
    """The cell's attack on a photo of camera model ``source`` and the model it aims at: the
    matrix's attack toward the model after ``source`` in class order (LLCM, which picks its
    own class, untargeted: None), or the cell's generator of the first of its targets that is
    not ``source`` (None when none is)."""
    if cell.method not in METHODS:
        attack = make_attack(cell.method, seed=seed, **attack_kwargs(cell))
        targeted = type(attack).aim is Attack.aim
        return attack, classes[(classes.index(source) + 1) % len(classes)] if targeted else None
    paths = dict(dict(cell.params)["generators"])
    target = next((t for t in paths if t != source and t in classes), None)
    return None if target is None else (make_attack(cell.method, generator=paths[target]), target)


def spoof_and_test(
    detector: Detector,
    cell: Cell,
    rgb: np.ndarray,
    clean: tuple[np.ndarray, np.ndarray],
    record: Record,
    models: Sequence[str],
    source: int,
    test: Tester,
    seed: int,
) -> dict[str, Any] | None:
    """One photo (of the fingerprints' device ``source``; ``clean``: its traces) spoofed by
    the cell's attack; the written uint8 tested against its source device (whole photo;
    attacked blocks, clean and spoofed) and against the devices of the model it is now read
    as."""
    chosen = cell_attack(cell, detector.classes, record.model, seed)
    if chosen is None:
        return None
    attack, target = chosen
    torch.manual_seed(seed)
    adv, result = attack_image(detector, rgb, attack, target)
    read = result.after.model
    claimed = [i for i, m in enumerate(models) if m == read and read != record.model]
    size = patch_protocol(detector).size
    region = attacked_blocks(rgb, adv, size)
    spoofed = test.traces(adv)
    whole = test.pce(spoofed, [source, *claimed])
    before = after = None
    if region.any():
        before = float(test.pce(clean, [source], region)[0])
        after = float(test.pce(spoofed, [source], region)[0])
    return {
        "photo": Path(record.path).name,
        "device": record.device,
        "target": target,
        "read_before": result.before.model,
        "read_after": read,
        "spoofed": read != record.model,
        "pce_source_clean": float(test.pce(clean, [source])[0]),
        "pce_source": float(whole[0]),
        "pce_claimed": float(whole[1:].max()) if claimed else None,
        "blocks": int(region.sum()) // size**2,
        "pce_source_blocks_clean": before,
        "pce_source_blocks": after,
        "psnr": result.psnr if np.isfinite(result.psnr) else None,
    }


def summary(photos: Sequence[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """A cell's photos in counts: matching their source device when clean, spoofed, still
    matching it, matching a device of the model read, caught; median PCEs."""
    spoofed = [p for p in photos if p["spoofed"]]

    def matches(p: dict[str, Any], key: str) -> bool:
        return p[key] is not None and p[key] >= threshold

    def median(key: str) -> float | None:
        values = [p[key] for p in photos if p[key] is not None]
        return float(np.median(values)) if values else None

    return {
        "n": len(photos),
        "clean_matched": sum(matches(p, "pce_source_clean") for p in photos),
        "spoofed": len(spoofed),
        "source_matched": sum(matches(p, "pce_source") for p in photos),
        "claimed_matched": sum(matches(p, "pce_claimed") for p in spoofed),
        "caught": sum(matches(p, "pce_source") and not matches(p, "pce_claimed") for p in spoofed),
        "pce_source_clean": median("pce_source_clean"),
        "pce_source": median("pce_source"),
        "pce_source_blocks_clean": median("pce_source_blocks_clean"),
        "pce_source_blocks": median("pce_source_blocks"),
        "photos": list(photos),
    }


def prnu_check(
    section: RobustnessConfig,
    detectors: Mapping[str, Mapping[str, Any]],
    manifest: Manifest,
    run_dir: Path,
    generators: Generators | None = None,
    seed: int = 0,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every cell of the matrix on ``section.prnu.photos`` whole evaluation photos, tested
    against the run's PRNU fingerprints; ``detectors``: the run's (their ``checkpoint``)."""
    check, settings = section.prnu, ResidualSettings()
    assert check is not None
    groups = enrolment(manifest, check.enrol)
    prints = device_fingerprints(
        manifest, groups, settings, run_dir / FINGERPRINTS_DIR, progress=progress
    )
    devices = list(prints)
    model_of = {r.device: r.model for r in manifest}
    models = [model_of[d] for d in devices]
    test = Tester(np.stack([prints[d].k for d in devices]), settings)
    records = photos_to_spoof(manifest, check.photos)
    clean = {r.path: load_rgb(manifest.abspath(r)) for r in records}
    traces = {path: test.traces(rgb) for path, rgb in clean.items()}
    rows = list(detectors)
    cells = matrix_cells(section, rows, generators)
    out: dict[str, Any] = {}
    for row in rows:
        detector = load_detector(detectors[row]["checkpoint"])
        out[row] = {}
        for column, cell in cells[row].items():
            tested = [
                spoof_and_test(
                    detector,
                    cell,
                    clean[r.path],
                    traces[r.path],
                    r,
                    models,
                    devices.index(r.device),
                    test,
                    seed,
                )
                for r in records
            ]
            out[row][column] = summary([t for t in tested if t is not None], check.threshold)
            s = out[row][column]
            log(
                f"  prnu {row} {column}: {s['spoofed']}/{s['n']} spoofed, {s['caught']} caught "
                f"by the source device's PRNU"
            )
    return {
        "threshold": check.threshold,
        "enrol": check.enrol,
        "residual": settings.to_dict(),
        "photos": [
            {
                "photo": Path(r.path).name,
                "device": r.device,
                "pce_source": float(test.pce(traces[r.path], [devices.index(r.device)])[0]),
            }
            for r in records
        ],
        "columns": list(cells[rows[0]]) if rows else [],
        "rows": out,
    }
