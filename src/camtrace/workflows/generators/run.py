"""The ``generators`` section of an experiment: one generator per target, trained against the
config's trained detectors, then measured in the layout of Chen et al. 2019 Tables 3-4.

:func:`plan_generators` checks the section against the detectors and the camera models before
any training; :func:`train_generators` trains (or resumes, or skips when finished) one generator
per target in ``runs/<name>/generators/<method>-<target>/``; :func:`evaluate_generators` attacks
source patches of the SEEN camera models (the eval split, patches whose model is not the target)
and of UNSEEN ones (a SimCam preset no part of training used, Chen Sec. 4.3) and reports per
target the SAR on the uint8 output, the mean PSNR and SSIM (Chen's m-PSNR, m-SSIM), the SAR of
every other detector of the config (transfer) and the SAR after JPEG with the target camera's
own tables. Chen counts every test patch, those of the target model included; we leave those
out, so a SAR here is never helped by patches that were the target already. For a generator
with a synthetic CFA block (MISLGAN, Adv-Cam-Id) the seen row also gives the PSNR classical
demosaicers reach on the same patches after that block (:mod:`camtrace.evaluation.cfa_reference`).
With ``photos``, whole eval photos of the seen models are spoofed in one tiled pass (Chen Sec.
3.4) and identified as ``camtrace identify`` does: a patch table's SAR is over the patches a
detector would pick by quality, a photo's verdict over every block it votes with.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from camtrace.attacks import Jpeg, make_attack, recompress
from camtrace.attacks.generative import (
    GenerativeAttack,
    StaleGeneratorRun,
    train_generator,
)
from camtrace.attacks.generative.training import GENERATOR_FILE, LOG_FILE, STATE_FILE
from camtrace.data.images import load_rgb
from camtrace.data.manifest import Manifest, Record
from camtrace.data.patch_store import PatchStore
from camtrace.errors import CamtraceError
from camtrace.evaluation.attack_metrics import distortion, softmax_scores, summarise_distortion
from camtrace.evaluation.cfa_reference import remosaic_psnr
from camtrace.evaluation.metrics import psnr
from camtrace.models.base import Detector
from camtrace.models.checkpoint import load_detector
from camtrace.models.inference import UNKNOWN, identify
from camtrace.models.openset import OpenSet, detector_openset
from camtrace.models.registry import model_spec
from camtrace.models.spec import ModelSpec
from camtrace.models.zoo import generator_zoo
from camtrace.workflows.attacks.run import CameraJpeg
from camtrace.workflows.config import ExperimentConfig, GeneratorsConfig
from camtrace.workflows.identification import Clock, DetectorSpec, SplitRun, prepare_unseen
from camtrace.workflows.report import decibels

CHEN_2019 = {
    "source": "Chen, Zhao & Stamm 2019, Tables 3-4: MISLGAN against MISLnet, 256x256 patches",
    "columns": [
        "target",
        "seen PSNR",
        "seen SSIM",
        "seen SAR %",
        "unseen PSNR",
        "unseen SSIM",
        "unseen SAR %",
    ],
    "tables": {
        "Database I (Dresden)": [
            [1, 43.4916, 0.9842, 99.25, 43.0004, 0.9847, 98.94],
            [5, 43.5857, 0.9815, 99.43, 43.0854, 0.9827, 98.32],
            [9, 43.7658, 0.9860, 99.04, 43.4468, 0.9870, 92.00],
            [13, 44.8767, 0.9866, 99.30, 44.5755, 0.9884, 98.78],
            [17, 42.9282, 0.9840, 97.91, 42.7480, 0.9860, 98.16],
        ],
        "Database II (own)": [
            [1, 45.9622, 0.9904, 96.19, 44.7714, 0.9877, 96.12],
            [4, 42.4920, 0.9831, 98.60, 45.9622, 0.9704, 98.52],
            [6, 44.3386, 0.9878, 98.33, 43.1272, 0.9842, 99.20],
            [8, 44.4763, 0.9876, 99.10, 43.3912, 0.9849, 99.20],
            [10, 45.9931, 0.9924, 97.13, 44.4994, 0.9892, 96.98],
        ],
    },
}
"""Chen's published tables, verbatim (Table 4 gives 42.49 dB seen for target 4 although the
text says every mean PSNR is at least 42.78 dB)."""


@dataclass(frozen=True)
class GeneratorPlan:
    """The ``generators`` section resolved against the detectors and the camera models."""

    section: GeneratorsConfig
    detectors: tuple[str, ...]  # trained against (several: an ensemble)
    judges: tuple[str, ...]  # the other detectors of the config (transfer)
    targets: tuple[str, ...]
    patch_size: int
    seed: int

    @property
    def units(self) -> tuple[tuple[str, str, float], ...]:
        """One generator each: (its name in the run, its target, its alpha); with an
        ``alpha_sweep``, one per target and value, named ``<target>-alpha-<value>``."""
        s = self.section
        if not s.alpha_sweep:
            return tuple((t, t, s.alpha) for t in self.targets)
        return tuple((f"{t}-alpha-{a:g}", t, a) for t in self.targets for a in s.alpha_sweep)

    def folder(self, run_dir: Path, name: str) -> Path:
        return run_dir / "generators" / f"{self.section.method}-{name}"


def plan_generators(
    section: GeneratorsConfig,
    sizes: Mapping[str, int],
    classes: list[str],
    seed: int,
    archs: Mapping[str, str] | None = None,
) -> GeneratorPlan:
    """Check ``section`` against the detectors (``sizes``: name -> patch size, in config
    order; ``archs``: name -> architecture, default the name, so a defended or renamed
    detector is known by its architecture) and the camera models ``classes``, before any
    training. The other detectors that run on ``patch_size`` patches judge the transfer."""
    names = list(sizes)

    def spec(name: str) -> ModelSpec:
        return model_spec((archs or {}).get(name, name))

    chosen = section.detectors or (names[0],)
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise CamtraceError(
            f"generators.detectors: {unknown} are not trained here; trained: {', '.join(names)}"
        )
    p = section.patch_size or sizes[chosen[0]]
    if p % 4 or p > sizes[chosen[0]]:
        raise CamtraceError(
            f"generators.patch_size: {p} must be a multiple of 4 and at most the "
            f"{sizes[chosen[0]]} px patches of {chosen[0]}"
        )
    for name in chosen:
        try:
            spec(name).check_patch_size(p)
        except CamtraceError as e:
            raise CamtraceError(f"generators.patch_size: {e}") from None
    targets = classes if section.targets == "all" else list(section.targets)
    missing = sorted(set(targets) - set(classes))
    if missing:
        raise CamtraceError(
            f"generators.targets: {missing} are not camera models of the data: {', '.join(classes)}"
        )
    judges = tuple(n for n in names if n not in chosen and p >= spec(n).min_patch_size)
    return GeneratorPlan(section, tuple(chosen), judges, tuple(targets), p, seed)


def centre_crop(patches: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` crop of (N, s, s, 3) patches, its corner at an even
    offset so the Bayer phase of the source is kept."""
    o = (patches.shape[1] - size) // 2 & ~1
    return np.ascontiguousarray(patches[:, o : o + size, o : o + size])


def _pick(store: PatchStore, split: str | None, n: int, seed: int) -> np.ndarray:
    """Up to ``n`` patch indices of ``split`` in a random order fixed by ``seed``."""
    idx = store.indices(split)
    if len(idx) == 0:
        raise CamtraceError(f"{store.path}: no patch in split '{split}' for the generators")
    return np.random.default_rng(seed).permutation(idx)[:n]


def _load(detectors: Mapping[str, dict[str, Any]], archs: tuple[str, ...]) -> dict[str, Detector]:
    return {a: load_detector(detectors[a]["checkpoint"]) for a in archs}


def train_generators(
    plan: GeneratorPlan,
    detectors: Mapping[str, dict[str, Any]],
    run_dir: Path,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Train one generator per target (``run_experiment``'s ``detectors`` entries: their
    ``checkpoint`` and ``patch_store``); a finished one is kept, a killed one resumed.
    Returns the checkpoint of each (by its name in the run: the target, or with an alpha
    sweep ``<target>-alpha-<value>``)."""
    s = plan.section
    models = list(_load(detectors, plan.detectors).values())
    store = PatchStore.open(detectors[plan.detectors[0]]["patch_store"])
    train = centre_crop(
        store.patches(_pick(store, "train", s.train_patches, plan.seed)), plan.patch_size
    )
    val = centre_crop(store.patches(_pick(store, "val", s.val_patches, plan.seed)), plan.patch_size)
    paths = {}
    for name, target, alpha in plan.units:
        shipped = zoo_generator(plan, detectors, target) if s.pretrained else None
        if shipped is not None:
            paths[name] = shipped
            log(f"generator {s.method} -> {name}: the zoo's, {shipped}")
            continue
        out = plan.folder(run_dir, name)
        state = (
            "finished, kept"
            if (out / GENERATOR_FILE).is_file()
            else "resumed"
            if (out / STATE_FILE).is_file()
            else "trained"
        )
        paths[name], retrained = train_or_retrain(
            train_generator,
            s.method,
            models,
            train,
            val,
            target,
            s.replace(alpha=alpha),  # the section is the generator's training settings
            out,
            log=log,
            seed=plan.seed,
            progress=progress,
        )
        state = "trained afresh" if retrained else state
        log(f"generator {s.method} -> {name}: {state}, {paths[name]}")
    return paths


def zoo_generator(
    plan: GeneratorPlan, detectors: Mapping[str, dict[str, Any]], target: str
) -> Path | None:
    """The verified file of the zoo's ``<method>-<target>`` generator if it was trained against
    the pretrained detectors this section trains against (by name, in order), else None."""
    against = tuple(detectors[d].get("pretrained") or "" for d in plan.detectors)
    entry = generator_zoo().get(f"{plan.section.method}-{target}")
    if entry is None or tuple(entry.against) != against or entry.patch_size != plan.patch_size:
        return None
    return entry.verified_path()


def train_or_retrain(
    train: Callable[..., Path], *args: Any, log: Callable[[str], None], **options: Any
) -> tuple[Path, bool]:
    """``train(*args)`` (:func:`train_generator` or :func:`train_spoc`), resuming or keeping
    what its folder holds; a folder trained with other settings, data or detectors (the
    config changed since) is trained afresh, as a stale detector is. The checkpoint path and
    whether it was retrained."""
    try:
        return train(*args, resume=True, **options), False
    except StaleGeneratorRun as stale:
        log(f"{stale}: training afresh")
        return train(*args, resume=False, **options), True


@dataclass
class Example:
    """Seen source patches and their spoofed versions for the examples figure."""

    clean: np.ndarray
    spoofed: np.ndarray
    pred_clean: list[str]
    pred_spoofed: list[str]


@dataclass
class GeneratorResults:
    """What :func:`evaluate_generators` measured (``metrics``), and what its report draws:
    examples and the training logs (``log.json``) by target."""

    metrics: dict[str, Any]
    examples: dict[str, Example]
    logs: dict[str, dict[str, Any]]


def _sar(detector: Detector, images: np.ndarray, target: int) -> float:
    return float(np.mean(softmax_scores(detector, images).argmax(1) == target))


def _measure(
    plan: GeneratorPlan,
    models: dict[str, Detector],
    attack: GenerativeAttack,
    x: np.ndarray,
    target: int,
    jpeg: Jpeg,
) -> tuple[dict[str, Any], np.ndarray]:
    """One Chen table cell group: the attack on ``x``, judged by every detector, as written
    and after the target camera's JPEG."""
    adv, _ = attack(models[plan.detectors[0]], x)
    adv = np.asarray(adv)
    by_detector = {a: _sar(m, adv, target) for a, m in models.items()}
    after = recompress(adv, jpeg)
    d = summarise_distortion(distortion(x, adv))
    row = {
        "n": len(x),
        "sar": float(np.mean([by_detector[a] for a in plan.detectors])),
        "sar_by_detector": {a: by_detector[a] for a in plan.detectors},
        "clean_sar": float(np.mean([_sar(models[a], x, target) for a in plan.detectors])),
        "psnr": d["psnr"],
        "ssim": d["ssim"],
        "unchanged": d["unchanged"],
        "jpeg_sar": float(np.mean([_sar(models[a], after, target) for a in plan.detectors])),
        "transfer": {a: by_detector[a] for a in plan.judges},
    }
    return row, adv


def photo_records(manifest: Manifest, target: str, per_model: int) -> list[Record]:
    """The first ``per_model`` eval photos (manifest order) of every model but ``target``."""
    records: list[Record] = []
    for model in manifest.models:
        if model != target:
            records += [r for r in manifest if r.model == model and r.split == "eval"][:per_model]
    return records


def measure_photos(
    detector: Detector, attack: GenerativeAttack, manifest: Manifest, target: str, per_model: int
) -> dict[str, Any]:
    """Whole photos spoofed toward ``target`` in one tiled pass (Chen Sec. 3.4), every photo
    (also one already read as the target), identified by ``detector`` on the uint8 pixels (as
    a lossless PNG reads): the share identified as the target before and after by the vote
    (closed set, Chen's reading), the mean PSNR, and per photo its verdicts and the target's
    vote share. With the detector's open-set calibration (as ``camtrace identify`` applies
    it), ``open_set`` adds the share still identified as the target and the share answered
    "unknown model", before and after."""
    calibration = detector_openset(detector)
    openset = None if isinstance(calibration, str) else calibration
    rows = []
    for record in photo_records(manifest, target, per_model):
        clean = load_rgb(manifest.abspath(record))
        spoofed = attack.spoof_image(clean)
        before = identify(detector, clean, openset=openset)
        after = identify(detector, spoofed, openset=openset)
        rows.append(
            {
                "photo": record.path,
                "model": record.model,
                "before": before.nearest,
                "read": after.nearest,
                "open_set_before": before.model,
                "open_set": after.model,
                "vote_share": after.scores[target],
                "psnr": psnr(clean, spoofed),
            }
        )
    return {
        "n": len(rows),
        "sar": float(np.mean([r["read"] == target for r in rows])),
        "clean_sar": float(np.mean([r["before"] == target for r in rows])),
        "vote_share": float(np.mean([r["vote_share"] for r in rows])),
        "psnr": _finite_mean([r["psnr"] for r in rows]),
        "open_set": calibration if openset is None else _open_set_summary(openset, rows, target),
        "photos": rows,
    }


def _open_set_summary(openset: OpenSet, rows: list[dict[str, Any]], target: str) -> dict[str, Any]:
    """The open-set verdicts of :func:`measure_photos`: identified as the target, and answered
    "unknown model", after the attack and before it."""
    return {
        "score": openset.score,
        "frr": openset.frr,
        "sar": float(np.mean([r["open_set"] == target for r in rows])),
        "rejected": float(np.mean([r["open_set"] == UNKNOWN for r in rows])),
        "clean_rejected": float(np.mean([r["open_set_before"] == UNKNOWN for r in rows])),
    }


def _finite_mean(values: list[float]) -> float | None:
    """Chen's m-PSNR over the photos the generator changed (None: it changed none)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def evaluate_generators(
    plan: GeneratorPlan,
    paths: Mapping[str, Path],
    detectors: Mapping[str, dict[str, Any]],
    manifest: Manifest,
    unseen: PatchStore | None,
    log: Callable[[str], None] = print,
) -> GeneratorResults:
    """Chen Tables 3-4 per target: SAR (uint8), m-PSNR, m-SSIM on seen and unseen source
    patches; the other detectors' SAR (transfer); the SAR after the target camera's JPEG."""
    s = plan.section
    models = _load(detectors, plan.detectors + plan.judges)
    classes = models[plan.detectors[0]].classes
    store = PatchStore.open(detectors[plan.detectors[0]]["patch_store"])
    seen_idx = _pick(store, "eval", len(store), plan.seed)
    seen_labels = store.labels(seen_idx, classes)
    sources = {}
    if unseen is not None:
        sources["unseen"] = centre_crop(
            unseen.patches(_pick(unseen, None, s.eval_patches, plan.seed)), plan.patch_size
        )
    camera = CameraJpeg(manifest)
    targets: dict[str, Any] = {}
    examples, logs = {}, {}
    for name, target, alpha in plan.units:
        t = classes.index(target)
        picked = seen_idx[seen_labels != t][: s.eval_patches]
        x = centre_crop(store.patches(picked), plan.patch_size)
        attack = make_attack(s.method, generator=paths[name], batch_size=s.batch_size)
        card = attack.card
        row: dict[str, Any] = {
            "target": target,
            "alpha": alpha,
            "checkpoint": str(paths[name]),
            "iterations": card["iterations"],
            "validation": card["validation"],
        }
        row["seen"], adv = _measure(plan, models, attack, x, t, camera(target))
        pattern = card.get("hparams", {}).get("pattern")
        if pattern:  # a synthetic CFA block (MISLGAN, Adv-Cam-Id): what demosaicers rebuild
            row["seen"]["cfa_reference"] = remosaic_psnr(x, pattern)
        if s.photos:
            row["photos"] = measure_photos(
                models[plan.detectors[0]], attack, manifest, target, s.photos
            )
        for key, images in sources.items():
            row[key], _ = _measure(plan, models, attack, images, t, camera(target))
        groups = ["seen", *sources]
        transfer = {g: row[g].pop("transfer") for g in groups}
        row["transfer"] = {a: {g: transfer[g][a] for g in groups} for a in plan.judges}
        row["jpeg"] = {"tables": f"{target}'s own", **{g: row[g].pop("jpeg_sar") for g in groups}}
        targets[name] = row
        logs[name] = read_log(paths[name].parent)
        if s.examples:
            k = s.examples
            judge = models[plan.detectors[0]]
            examples[name] = Example(
                x[:k],
                adv[:k],
                [classes[i] for i in softmax_scores(judge, x[:k]).argmax(1)],
                [classes[i] for i in softmax_scores(judge, adv[:k]).argmax(1)],
            )
        log(f"  {s.method} -> {name}: " + "; ".join(_describe(g, row[g]) for g in groups))
        if "photos" in row:
            ph = row["photos"]
            log(
                f"  {s.method} -> {name}: whole photos {100 * ph['sar']:.0f}% identified as "
                f"the target (n={ph['n']}), PSNR {decibels(ph['psnr'])}"
            )
    metrics = {
        "method": s.method,
        "detectors": list(plan.detectors),
        "judges": list(plan.judges),
        "patch_size": plan.patch_size,
        "unseen": None if unseen is None else _unseen_summary(unseen, sources["unseen"]),
        "targets": targets,
        "paper": CHEN_2019,
    }
    return GeneratorResults(metrics, examples, logs)


def _describe(group: str, r: dict[str, Any]) -> str:
    return (
        f"{group} SAR {100 * r['sar']:.1f}%, PSNR {decibels(r['psnr'])}, SSIM {r['ssim']:.4f} "
        f"(n={r['n']})"
    )


def _unseen_summary(store: PatchStore, picked: np.ndarray) -> dict[str, Any]:
    return {"models": list(store.classes), "store": str(store.path), "patches": len(picked)}


def read_log(folder: Path) -> dict[str, Any]:
    """A generator folder's training log (``log.json``), empty when there is none."""
    path = folder / LOG_FILE
    return json.loads(path.read_text()) if path.is_file() else {"losses": [], "validation": []}


# -- in an experiment -----------------------------------------------------------------------------


def generator_paths(generators: GeneratorResults | None) -> dict[str, dict[str, str]]:
    """The trained generators of a ``generators`` section, by method and target, for the
    robustness matrix's generative column."""
    if generators is None:
        return {}
    m = generators.metrics
    return {m["method"]: {t: row["checkpoint"] for t, row in m["targets"].items()}}


def plan_generators_of(
    config: ExperimentConfig, specs: list[DetectorSpec], manifest: Manifest
) -> GeneratorPlan | None:
    """The ``generators`` section checked against the detectors and camera models."""
    if config.generators is None:
        return None
    sizes = {s.name: s.protocol.size for s in specs}
    archs = {s.name: s.arch for s in specs}
    return plan_generators(config.generators, sizes, manifest.models, config.seed, archs)


def run_generators(
    plan: GeneratorPlan,
    config: ExperimentConfig,
    specs: list[DetectorSpec],
    split: SplitRun,
    run_dir: Path,
    clock: Clock,
    progress: bool,
    log: Callable[[str], None],
) -> GeneratorResults:
    """Train (or resume, or keep) the generators, then measure them on seen and unseen
    camera models (Chen Tables 3-4)."""
    paths = train_generators(plan, split.detectors, run_dir, progress, log)
    clock.lap("generators: train")
    protocol = next(s.protocol for s in specs if s.name == plan.detectors[0])
    unseen = prepare_unseen(config, protocol, split.seed, progress)
    if unseen is not None:
        clock.lap("generators: unseen data")
    results = evaluate_generators(plan, paths, split.detectors, split.manifest, unseen, log)
    clock.lap("generators: evaluate")
    return results
