"""The ``spoc`` section resolved: SpoC's settings and published numbers (Cozzolino et al.
2021), the plan checked against the detectors and camera models before any training, and the
PSNR rule that tunes the gradient baselines' eps (SpoC Sec. 5.2: every method at ~31 dB)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from camtrace.attacks.generative import (
    SpoCConfig,
)
from camtrace.errors import CamtraceError
from camtrace.evaluation.attack_metrics import distortion, summarise_distortion
from camtrace.workflows.config import SpocSectionConfig

BASELINES = {
    "pgd": {"steps": 40, "alpha": 1.25, "early_stop": False},
    "timifgsm": {"steps": 40, "alpha": 0.4, "early_stop": False},
}
"""SpoC supplement Sec. C: 40 iterations, step 1.25 (PGD) and 0.4 (TI-MI-FGSM); no early stop,
which would leave the perturbation weakest for the detectors it was not crafted on."""

ENSEMBLE_GENERATIVE = ("gap",)  # SpoC's third block: PGD, TI-MI-FGSM and GAP
ENSEMBLE = "ensemble"
ABLATIONS = {"only-embedder": {"lambda_a": 0.0}, "only-discriminator": {"lambda_e": 0.0}}
REC_VARIANT = "spoc-rec-"  # + the weight: a variant of spoc.rec_sweep

SPOC_2021 = {
    "source": "Cozzolino, Thies, Rössler, Nießner & Verdoliva 2021 (SpoC), 256x256 patches, "
    "10 camera models, 5 targets",
    "classifiers": ["Tuama2016", "Bondi2017", "Xception", "InceptionV3"],
    "table3": {"Tuama2016": 74.1, "Bondi2017": 87.1, "Xception": 97.0, "InceptionV3": 95.4},
    "table4": {  # block, method, PSNR, SAR % per classifier; plain, then after the camera's JPEG
        "plain": [
            ["Bondi2017", "pgd", 30.98, 12.31, 96.23, 0.49, 2.65],
            ["Bondi2017", "timifgsm", 31.51, 8.05, 63.56, 9.02, 0.59],
            ["Bondi2017", "gap", 30.85, 9.91, 74.34, 2.46, 17.16],
            ["Bondi2017", "advcamid", 30.24, 18.38, 100.00, 50.08, 60.70],
            ["Xception", "pgd", 33.73, 8.80, 8.27, 96.84, 0.30],
            ["Xception", "timifgsm", 30.93, 12.27, 8.68, 99.95, 1.82],
            ["Xception", "gap", 31.51, 6.69, 1.93, 98.00, 21.29],
            ["Xception", "advcamid", 29.91, 23.29, 41.35, 99.98, 42.19],
            ["Ensemble", "pgd", 32.88, 12.23, 11.39, 5.06, 2.22],
            ["Ensemble", "timifgsm", 31.32, 13.24, 9.58, 13.10, 2.80],
            ["Ensemble", "gap", 31.04, 26.59, 4.83, 18.22, 17.91],
            ["none", "spoc", 31.71, 53.34, 67.57, 81.37, 71.65],
        ],
        "camera_jpeg": [
            ["Bondi2017", "pgd", 30.98, 1.02, 96.17, 0.03, 0.84],
            ["Bondi2017", "timifgsm", 31.38, 31.21, 31.72, 1.40, 2.00],
            ["Bondi2017", "gap", 31.69, 20.71, 67.41, 3.09, 22.35],
            ["Bondi2017", "advcamid", 30.18, 24.08, 89.46, 54.51, 58.79],
            ["Xception", "pgd", 33.52, 24.71, 6.06, 98.21, 0.19],
            ["Xception", "timifgsm", 30.77, 35.05, 3.16, 87.94, 6.51],
            ["Xception", "gap", 32.09, 5.36, 0.57, 96.42, 5.54],
            ["Xception", "advcamid", 29.69, 37.59, 37.19, 97.52, 43.28],
            ["Ensemble", "pgd", 32.70, 20.31, 9.21, 1.16, 0.53],
            ["Ensemble", "timifgsm", 31.07, 29.98, 3.23, 5.24, 5.48],
            ["Ensemble", "gap", 31.97, 25.45, 4.25, 12.10, 6.79],
            ["none", "spoc", 31.41, 55.57, 64.73, 73.43, 69.25],
        ],
    },
    "table5": [
        ["spoc", 31.71, 53.34, 67.57, 81.37, 71.65],
        ["only-embedder", 49.71, 48.13, 6.76, 10.75, 13.18],
        ["only-discriminator", 31.18, 47.91, 63.81, 66.73, 70.36],
    ],
    "table1": {
        "before": {"Xception": 99.98, "Spec": 99.91},
        "after": {"Xception": 20.85, "Spec": 4.83},
    },
    "table2": {
        "before": {"Xception": 90.50, "Spec": 20.25},
        "after": {"Xception": 2.50, "Spec": 11.64},
    },
    "table6": [["none", "spoc", 31.93, 53.95, 53.05, 78.60, 68.00]],
}
"""SpoC's published numbers, verbatim, under the paper's names (a classifier's lower-case name is
its camtrace architecture; Tables 1-6; Table 6's baselines are not reproduced)."""


@dataclass(frozen=True)
class SpocPlan:
    """The ``spoc`` section resolved against the detectors and the camera models."""

    section: SpocSectionConfig
    classifiers: tuple[str, ...]  # every detector of the config judges
    crafted_on: tuple[str, ...]
    targets: tuple[str, ...]
    patch_size: int
    seed: int

    def folder(self, run_dir: Path, kind: str, method: str, block: str, target: str) -> Path:
        return spoc_folder(run_dir, kind, method, block, target)

    def spoc_variants(self, kind: str) -> dict[str, SpoCConfig]:
        """SpoC (the section's training settings), and on the first kind the Table 5
        ablations and the L_REC weights of ``rec_sweep``."""
        spoc, s = self.section.training, self.section
        variants = {"spoc": spoc}
        if kind != s.inputs[0]:
            return variants
        if s.ablation:
            variants |= {name: spoc.replace(**o) for name, o in ABLATIONS.items()}
        sweep = [w for w in s.rec_sweep if w != spoc.lambda_rec]  # SpoC's own run is that one
        return variants | {f"{REC_VARIANT}{w:g}": spoc.replace(lambda_rec=w) for w in sweep}


def spoc_folder(run_dir: Path, kind: str, method: str, block: str, target: str) -> Path:
    """Where a run keeps one generator of its ``spoc`` section: by the kind of S, the method
    (or ablation), the block it was crafted on (``none`` for SpoC) and the target."""
    return run_dir / "spoc" / kind / f"{method}-{block}-{target}"


def plan_spoc(
    section: SpocSectionConfig, sizes: Mapping[str, int], classes: Sequence[str], seed: int
) -> SpocPlan:
    """Check ``section`` against the detectors (``sizes``: name -> patch size) and the camera
    models ``classes`` before any training."""
    missing = sorted(set(section.targets) - set(classes))
    if missing:
        raise CamtraceError(
            f"spoc.targets: {missing} are not camera models of the data: {', '.join(classes)}"
        )
    crafted = section.crafted_on or tuple(sizes)[:2]
    unknown = sorted(set(crafted) - set(sizes))
    if unknown:
        raise CamtraceError(
            f"spoc.crafted_on: {unknown} are not trained here; trained: {', '.join(sizes)}"
        )
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{a}: {s}" for a, s in sizes.items())
        raise CamtraceError(
            f"spoc: every detector judges the same patches; give them one patch size ({listed})"
        )
    if section.ensemble and len(sizes) < 3:
        raise CamtraceError(
            "spoc.ensemble: crafted on the other detectors, it needs at least 3; add detectors "
            "or set ensemble: false"
        )
    p = next(iter(sizes.values()))
    if p > section.synthetic.size:
        raise CamtraceError(
            f"spoc.synthetic.size: {section.synthetic.size} px images cannot give the "
            f"detectors' {p} px patches; raise it"
        )
    return SpocPlan(section, tuple(sizes), crafted, tuple(section.targets), p, seed)


def closest_eps(psnrs: Mapping[float, float | None], target: float) -> float:
    """The eps whose PSNR is closest to ``target`` dB (None: unchanged, infinitely far);
    on a tie the smaller eps."""
    far = float("inf")
    return min(sorted(psnrs), key=lambda e: far if psnrs[e] is None else abs(psnrs[e] - target))


def mean_psnr(clean: np.ndarray, spoofed: np.ndarray) -> float | None:
    """Mean PSNR of the changed patches (None when nothing changed)."""
    return summarise_distortion(distortion(clean, spoofed))["psnr"]
