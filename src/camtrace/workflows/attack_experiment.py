"""The ``attacks`` section of an experiment: Güera 2018 Tables 3-4, Zhao Table 2, SpoC Table 4.

:func:`camtrace.workflows.experiment.run_experiment` parses the section before training
(:func:`parse_attacks`, so a bad section fails at once) and runs it on the trained detectors
(:func:`run_attacks`). Config shape; every key but ``runs`` / ``transfer`` is optional::

    attacks:
      split: eval         # the split of each detector's patch store that is attacked
      patches: 500        # per detector: a random pick fixed by the experiment's seed
      select: correct     # correct: only patches the detector classifies correctly (Güera
                          # Sec. 4.3); all: any patch, judged against its true label (Zhao)
      jpeg: [null, 90]    # judge every output as is (null) and after JPEG re-compression:
                          # a quality 1-100, or `camera`: the quantisation tables and chroma
                          # subsampling of the target camera's own files (SpoC Table 4,
                          # bottom); for untargeted attacks, of the patch's own camera
      batch_size: 128
      examples: 4         # patches shown per run in the examples figure (Güera Fig. 4)
      runs:               # each run attacks every detector, or those listed in `detectors`
        - {method: fgsm, eps: [0.001, 0.002, 0.005, 0.01]}  # one setting per eps; <= 1 is
                                                             # the [0, 1] scale (x 255)
        - {method: jsma, targets: all, patches: 20, params: {theta: 255, gamma: 0.1}}
        - {method: llcm, eps: [1, 2, 3, 4, 5]}               # > 1: 0-255 pixel units
        - {method: pgd, eps: [4], params: {jpeg: 90, through_jpeg: true}}  # built to survive
                                                             # JPEG q90 (gradient through it)
        - {method: pgd, eps: [4], targets: all, params: {jpeg: camera, through_jpeg: true}}
                                                             # ... the target camera's JPEG
      transfer:           # crafted on each detector, judged by every one (SpoC Table 4)
        {method: pgd, eps: 4, targets: all, patches: 200, params: {steps: 10}}

``method`` is any name of :data:`camtrace.attacks.ATTACKS`; ``params`` go to its constructor
as given (0-255 pixel units); ``targets`` is null (untargeted), ``all`` (one setting per
camera model, patches of that model left out) or a list of model names; ``patches`` caps a
run below the section's pick. In the transfer, patch i is pushed toward the i-th target in
turn (never its own model), so the matrix averages over targets as SpoC does; its cells are
SARs for a targeted attack, error rates for an untargeted one, and all its detectors must
see one patch size. Success is counted on the uint8 outputs; the attack's float-domain
success is reported beside, never instead (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from rich.progress import Progress
from torch import nn

from camtrace.attacks import ATTACKS, Jpeg, as_pixel_eps, make_attack, recompress
from camtrace.attacks.base import eval_mode
from camtrace.data.manifest import Manifest
from camtrace.data.patch_store import PatchStore
from camtrace.data.patches import get_protocol
from camtrace.errors import CamtraceError
from camtrace.evaluation.attack_metrics import (
    as_nhwc,
    attack_metrics,
    correct_subset,
    distortion,
    outcome_from_scores,
    outcome_metrics,
    softmax_scores,
    summarise_distortion,
)
from camtrace.models.base import Detector
from camtrace.models.checkpoint import load_detector
from camtrace.workflows import plots
from camtrace.workflows.report import Report, percent

SECTION_KEYS = ("split", "patches", "select", "jpeg", "batch_size", "examples", "runs", "transfer")
RUN_KEYS = ("method", "eps", "units", "targets", "params", "patches", "detectors")
UNITS = ("auto", "pixel", "unit")
SELECT = ("correct", "all")
PLAIN = "plain"
METRIC_NAMES = {"sar": "SAR", "error_rate": "error rate"}
JpegItem = int | str | None


@dataclass(frozen=True)
class RunSpec:
    """One attack of the section: a method swept over ``eps`` values and/or targets."""

    method: str
    eps: tuple[float, ...] = ()
    units: str = "auto"
    targets: str | tuple[str, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    patches: int | None = None
    detectors: tuple[str, ...] | None = None


@dataclass(frozen=True)
class AttackPlan:
    """The parsed ``attacks`` section."""

    runs: tuple[RunSpec, ...]
    transfer: RunSpec | None = None
    split: str = "eval"
    patches: int = 500
    select: str = "correct"
    jpeg: tuple[JpegItem, ...] = (None,)
    batch_size: int = 128
    examples: int = 4


def _fail(message: str) -> NoReturn:
    raise CamtraceError(f"attacks: {message}")


def _integer(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(f"{what}={value!r} must be an integer >= {minimum}")
    return int(value)


def _check_keys(section: Any, known: Sequence[str], what: str) -> dict[str, Any]:
    if not isinstance(section, dict):
        _fail(f"{what} must be a mapping with keys {', '.join(known)}")
    unknown = sorted(set(section) - set(known))
    if unknown:
        _fail(f"{what}: unknown key(s) {unknown}; known: {', '.join(known)}")
    return section


def _parse_jpeg(value: Any) -> tuple[JpegItem, ...]:
    items = tuple(value) if isinstance(value, list) else (value,)
    for item in items:
        ok = (
            item is None
            or item == "camera"
            or (isinstance(item, int) and not isinstance(item, bool) and 1 <= item <= 100)
        )
        if not ok:
            _fail(f"jpeg item {item!r}: use null (as is), a quality 1-100 or 'camera'")
    return items


def _parse_run(raw: Any, archs: list[str], what: str) -> RunSpec:
    raw = _check_keys(raw, RUN_KEYS, what)
    method = str(raw.get("method", "")).lower()
    if method not in ATTACKS:
        _fail(f"{what}: method {raw.get('method')!r} unknown; choose one of {', '.join(ATTACKS)}")
    eps = raw.get("eps", [])
    eps = eps if isinstance(eps, list) else [eps]
    if not all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in eps):
        _fail(f"{what}: eps {eps!r} must be a number or a list of numbers")
    eps = tuple(float(e) for e in eps)
    units = raw.get("units", "auto")
    if units not in UNITS:
        _fail(
            f"{what}: units={units!r}: use auto (<= 1 is the [0, 1] scale), pixel (0-255) or "
            f"unit ([0, 1])"
        )
    targets = raw.get("targets")
    if not (
        targets is None
        or targets == "all"
        or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))
    ):
        _fail(f"{what}: targets {targets!r} must be null, 'all' or a list of camera model names")
    if method == "llcm" and targets is not None:
        _fail(f"{what}: llcm picks the least-likely class itself; drop targets or use fgsm")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        _fail(f"{what}: params must be a mapping of the attack's keyword arguments")
    if params.get("jpeg") == "camera" and (targets is None or what == "transfer"):
        _fail(
            f"{what}: params jpeg 'camera' means the target camera's tables: it needs targets, one "
            "per setting (not in a transfer); use a quality there"
        )
    detectors = raw.get("detectors")
    if detectors is not None:
        if not isinstance(detectors, list):
            _fail(f"{what}: detectors must be a list of architectures, e.g. [{archs[0]}]")
        unknown = sorted(set(detectors) - set(archs))
        if unknown:
            _fail(f"{what}: detectors {unknown} are not trained here; trained: {', '.join(archs)}")
    spec = RunSpec(
        method,
        eps,
        units,
        tuple(targets) if isinstance(targets, list) else targets,
        params,
        None if raw.get("patches") is None else _integer(raw["patches"], f"{what}.patches"),
        None if detectors is None else tuple(detectors),
    )
    for e in spec.eps or (None,):
        _build_attack(spec, e, 1)  # unknown parameters or bad values fail before training
    return spec


def parse_attacks(section: Any, specs: list[dict[str, Any]]) -> AttackPlan | None:
    """Validate the ``attacks`` section against the detectors of ``specs`` (None if absent)."""
    if section is None:
        return None
    section = _check_keys(section, SECTION_KEYS, "the section")
    archs = [s["arch"] for s in specs]
    runs = tuple(
        _parse_run(r, archs, f"runs[{i}]") for i, r in enumerate(section.get("runs") or [])
    )
    transfer = section.get("transfer")
    if transfer is not None:
        transfer = _parse_run(transfer, archs, "transfer")
        _check_transfer(transfer, specs)
    if not runs and transfer is None:
        _fail("give at least one entry in runs or a transfer")
    select = section.get("select", "correct")
    if select not in SELECT:
        _fail(f"select={select!r}: use 'correct' (Güera) or 'all' (Zhao)")
    return AttackPlan(
        runs=runs,
        transfer=transfer,
        split=str(section.get("split", "eval")),
        patches=_integer(section.get("patches", 500), "patches"),
        select=select,
        jpeg=_parse_jpeg(section.get("jpeg")),
        batch_size=_integer(section.get("batch_size", 128), "batch_size"),
        examples=_integer(section.get("examples", 4), "examples", minimum=0),
    )


def _check_transfer(spec: RunSpec, specs: list[dict[str, Any]]) -> None:
    if len(spec.eps) > 1:
        _fail("transfer: give one eps value (sweeps belong in runs)")
    chosen = [s for s in specs if spec.detectors is None or s["arch"] in spec.detectors]
    if len(chosen) < 2:
        _fail("transfer needs at least two detectors (add a `detectors:` list to the config)")
    sizes = {}
    for s in chosen:
        p = s["patches"]
        sizes[s["arch"]] = get_protocol(p["protocol"], size=p.get("size")).size
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{a}: {v}" for a, v in sizes.items())
        _fail(
            f"transfer: detectors see different patch sizes ({listed}); give them one patches "
            f"protocol/size"
        )


def pixel_eps(eps: float, units: str = "auto") -> tuple[float, str]:
    """Epsilon in 0-255 pixel units and a note saying how it was read: ``auto`` as
    :func:`camtrace.attacks.as_pixel_eps` (<= 1 is the [0, 1] scale), ``pixel`` as given
    (Zhao's eps = 1), ``unit`` times 255 (Güera's eps = 0.01)."""
    if units == "auto":
        return as_pixel_eps(eps)
    if not eps > 0:
        _fail(f"epsilon {eps:g} must be positive")
    if units == "pixel":
        return eps, f"{eps:g} in 0-255 pixel units"
    return eps * 255, f"{eps:g} read on the [0, 1] scale = {eps * 255:g} in 0-255 pixel units"


def _build_attack(
    spec: RunSpec, eps: float | None, batch_size: int, camera: Jpeg | None = None
) -> Any:
    """The run's attack at ``eps``; ``params: {jpeg: camera}`` takes ``camera``, the target
    camera's own JPEG settings (quality 90 stands in for them while the config is validated)."""
    kwargs = {"batch_size": batch_size, **spec.params}
    if kwargs.get("jpeg") == "camera":
        kwargs["jpeg"] = camera or Jpeg(quality=90)
    if eps is not None:
        kwargs["eps"] = pixel_eps(eps, spec.units)[0]
    return make_attack(spec.method, **kwargs)


# -- what is attacked ---------------------------------------------------------------------------


@dataclass
class Pool:
    """The patches of one detector that are attacked: a seeded pick of its split."""

    images: np.ndarray  # (n, s, s, 3) uint8
    labels: np.ndarray  # true classes, in the detector's class order
    available: int  # patches in the split
    examined: int  # patches classified to find them


def build_pool(detector: Detector, store: PatchStore, plan: AttackPlan, seed: int) -> Pool:
    """Pick ``plan.patches`` patches of ``plan.split``: correctly classified ones (Güera) or
    any (Zhao), in a random order fixed by ``seed``."""
    idx = store.indices(plan.split, models=[m for m in detector.classes if m in store.classes])
    images, labels = store.patches(idx), store.labels(idx, detector.classes)
    if plan.select == "correct":
        picked, examined = correct_subset(detector, images, labels, plan.patches, seed)
    else:
        picked = np.random.default_rng(seed).permutation(len(idx))[: plan.patches]
        examined = len(picked)
    return Pool(images[picked], labels[picked], len(idx), examined)


class CameraJpeg:
    """Each camera model's own JPEG settings, read from its first image in the manifest."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.cache: dict[str, Jpeg] = {}

    def __call__(self, model: str) -> Jpeg:
        if model not in self.cache:
            record = next((r for r in self.manifest if r.model == model), None)
            if record is None:
                raise CamtraceError(f"attacks: jpeg 'camera': no image of {model} in the manifest")
            path = self.manifest.abspath(record)
            self.cache[model] = Jpeg.from_file(path)
        return self.cache[model]


def _jpeg_name(item: JpegItem) -> str:
    return PLAIN if item is None else ("camera" if item == "camera" else f"q{item}")


def judged(
    images: np.ndarray, item: JpegItem, models: np.ndarray, camera: CameraJpeg, classes: list[str]
) -> np.ndarray:
    """``images`` as the detector is asked to judge them: as is, or JPEG re-compressed with
    one quality or with the tables of the camera model ``models[i]`` of each image."""
    if item is None:
        return images
    if item != "camera":
        return recompress(images, Jpeg(quality=int(item)))
    out = np.empty_like(images)
    for c in np.unique(models):
        rows = models == c
        out[rows] = recompress(images[rows], camera(classes[c]))
    return out


# -- running ------------------------------------------------------------------------------------


@dataclass
class Example:
    """Patches for the examples figure (Güera Fig. 4) of one run on one detector."""

    clean: np.ndarray
    adv: np.ndarray
    gradient_sign: np.ndarray
    pred_clean: list[str]
    pred_adv: list[str]
    setting: str


@dataclass
class AttackResults:
    """What :func:`run_attacks` measured (``metrics``) and what its report draws."""

    metrics: dict[str, Any]
    examples: dict[tuple[str, int], Example] = field(default_factory=dict)

    def add_to_report(self, report: Report) -> None:
        add_attack_report(report, self.metrics, self.examples)


@dataclass
class _Context:
    plan: AttackPlan
    camera: CameraJpeg
    seed: int
    log: Callable[[str], None]
    advance: Callable[[], None]


def gradient_sign_image(detector: nn.Module, images: np.ndarray) -> np.ndarray:
    """sign(grad_x J(x, y')) at the detector's own label y' as Güera Fig. 4 prints it:
    -1 -> 0, 0 and +1 -> 255 (uint8, N, H, W, 3)."""
    param = next(detector.parameters())
    x = torch.from_numpy(np.ascontiguousarray(as_nhwc(images))).permute(0, 3, 1, 2)
    x = x.to(param.device, param.dtype).requires_grad_(True)
    with eval_mode(detector):
        logits = detector(x)
        loss = F.cross_entropy(logits, logits.argmax(1).detach(), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return np.where(grad.permute(0, 2, 3, 1).cpu().numpy() >= 0, 255, 0).astype(np.uint8)


def _target_indices(targets: str | tuple[str, ...] | None, classes: list[str]) -> list[int | None]:
    if targets is None:
        return [None]
    if targets == "all":
        return list(range(len(classes)))
    unknown = sorted(set(targets) - set(classes))
    if unknown:
        raise CamtraceError(
            f"attacks: targets {unknown} are not classes of the detector: {', '.join(classes)}"
        )
    return [classes.index(t) for t in targets]


def _attack_setting(
    spec: RunSpec, eps: float | None, target: int | None, det: Detector, pool: Pool, ctx: _Context
) -> tuple[dict[str, Any], tuple[np.ndarray, ...] | None]:
    """Attack one setting (eps, target) of a run; its metrics row and (clean, adv) patches."""
    keep = np.ones(len(pool.labels), bool) if target is None else pool.labels != target
    x, y = pool.images[keep][: spec.patches], pool.labels[keep][: spec.patches]
    row: dict[str, Any] = {
        "eps": eps,
        "eps_pixels": None if eps is None else pixel_eps(eps, spec.units)[0],
        "target": None if target is None else det.classes[target],
        "n": len(x),
    }
    if len(x) == 0:
        ctx.log(f"  {spec.method}: no patch to attack for target {row['target']} (skipped)")
        return row, None
    torch.manual_seed(ctx.seed)
    camera = ctx.camera(det.classes[target]) if spec.params.get("jpeg") == "camera" else None
    adv, info = _build_attack(spec, eps, ctx.plan.batch_size, camera)(
        det, x, target=target, labels=y
    )
    row.update(attack_metrics(det, x, y, adv, target=target, batch_size=ctx.plan.batch_size))
    row["attack"] = info.summary()
    t = None if target is None else np.full(len(y), target)
    models = y if target is None else t
    row["jpeg"] = {
        _jpeg_name(item): outcome_metrics(
            softmax_scores(det, judged(adv, item, models, ctx.camera, det.classes)),
            y,
            det.classes,
            t,
        )
        for item in ctx.plan.jpeg
        if item is not None
    }
    return row, (x, adv)


def _describe(row: dict[str, Any], targeted: bool) -> str:
    o = row["overall"]
    where = [] if row["eps"] is None else [f"eps {row['eps']:g} ({row['eps_pixels']:g} px)"]
    where += [] if row["target"] is None else [f"-> {row['target']}"]
    rate = f"SAR {percent(o['sar'])}, " if targeted else ""
    psnr = "unchanged" if o["psnr"] is None else f"PSNR {o['psnr']:.1f} dB"
    return (
        f"{' '.join(where)}: {rate}error rate {percent(o['error_rate'])}, confidence "
        f"{percent(o['confidence'])} (float beside: "
        f"{percent(row['attack']['float_success_rate'])}), "
        f"{psnr}, n={o['n']}"
    )


def _run_on_detector(
    spec: RunSpec,
    index: int,
    arch: str,
    det: Detector,
    pool: Pool,
    ctx: _Context,
    examples: dict[tuple[str, int], Example],
) -> dict[str, Any]:
    targets = _target_indices(spec.targets, det.classes)
    settings = [(e, t) for e in (spec.eps or (None,)) for t in targets]
    shown = settings[len(settings) // 2]
    rows = []
    for eps, target in settings:
        row, patches = _attack_setting(spec, eps, target, det, pool, ctx)
        ctx.advance()
        rows.append(row)
        if patches is None:
            continue
        ctx.log(f"  {arch} {spec.method} {_describe(row, target is not None)}")
        if (eps, target) == shown and ctx.plan.examples > 0:
            examples[(arch, index)] = _example(det, *patches, row, ctx.plan.examples)
    return {
        "method": spec.method,
        "params": spec.params,
        "targeted": spec.targets is not None,
        "settings": rows,
    }


def _example(
    det: Detector, x: np.ndarray, adv: np.ndarray, row: dict[str, Any], count: int
) -> Example:
    x, adv = x[:count], adv[:count]
    names = [det.classes[i] for i in softmax_scores(det, x).argmax(1)]
    names_adv = [det.classes[i] for i in softmax_scores(det, adv).argmax(1)]
    setting = ", ".join(
        filter(
            None,
            [
                None if row["eps"] is None else f"eps {row['eps']:g} ({row['eps_pixels']:g} px)",
                None if row["target"] is None else f"target {row['target']}",
            ],
        )
    )
    return Example(
        x, adv, gradient_sign_image(det, x), names, names_adv, setting or "default parameters"
    )


def _clean_outcome(det: Detector, pool: Pool, ctx: _Context) -> dict[str, Any]:
    """The detector on the picked patches before any attack, as is and after each JPEG."""
    out: dict[str, Any] = {
        "available": pool.available,
        "examined": pool.examined,
        "picked": len(pool.labels),
        "select": ctx.plan.select,
    }
    if len(pool.labels) == 0:
        return out
    for item in ctx.plan.jpeg:
        images = judged(pool.images, item, pool.labels, ctx.camera, det.classes)
        out[_jpeg_name(item)] = outcome_from_scores(softmax_scores(det, images), pool.labels)
    return out


def assign_targets(labels: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """Target of each sample for a transfer: the i-th of ``targets`` in turn, skipping the
    sample's own class; -1 where no other target exists."""
    out = np.full(len(labels), -1, dtype=np.int64)
    for i, y in enumerate(labels):
        options = [t for t in targets if t != y]
        if options:
            out[i] = options[i % len(options)]
    return out


def _transfer(
    spec: RunSpec, dets: dict[str, Detector], pools: dict[str, Pool], ctx: _Context
) -> dict[str, Any]:
    """Craft on each detector, judge on every one (SpoC Table 4), plain and after JPEG."""
    archs = [a for a in dets if spec.detectors is None or a in spec.detectors]
    classes = dets[archs[0]].classes
    for a in archs:
        if dets[a].classes != classes:
            raise CamtraceError(
                f"attacks: transfer needs one class list; {a} has {dets[a].classes}"
            )
    targeted = spec.targets is not None
    metric = "sar" if targeted else "error_rate"
    eps = spec.eps[0] if spec.eps else None
    out: dict[str, Any] = {
        "method": spec.method,
        "eps": eps,
        "eps_pixels": None if eps is None else pixel_eps(eps, spec.units)[0],
        "params": spec.params,
        "metric": metric,
        "detectors": archs,
        "sources": {},
    }
    for a in archs:
        x, y = pools[a].images[: spec.patches], pools[a].labels[: spec.patches]
        t = assign_targets(y, _target_indices(spec.targets, classes)) if targeted else None
        if t is not None:
            x, y, t = x[t >= 0], y[t >= 0], t[t >= 0]
        if len(x) == 0:
            ctx.log(f"  transfer from {a}: no patch to attack (skipped)")
            ctx.advance()
            continue
        torch.manual_seed(ctx.seed)
        adv, info = _build_attack(spec, eps, ctx.plan.batch_size)(dets[a], x, target=t, labels=y)
        models = y if t is None else t
        attacked, clean = {}, {}
        for item in ctx.plan.jpeg:
            adv_j = judged(adv, item, models, ctx.camera, classes)
            x_j = judged(x, item, models, ctx.camera, classes)
            attacked[_jpeg_name(item)] = {
                b: outcome_from_scores(softmax_scores(dets[b], adv_j), y, t)[metric] for b in archs
            }
            clean[_jpeg_name(item)] = {
                b: outcome_from_scores(softmax_scores(dets[b], x_j), y, t)[metric] for b in archs
            }
        out["sources"][a] = {
            "n": len(x),
            "attack": info.summary(),
            "distortion": summarise_distortion(distortion(x, adv)),
            "attacked": attacked,
            "clean": clean,
        }
        cells = ", ".join(
            f"{b} {percent(v)}" for b, v in attacked[_jpeg_name(ctx.plan.jpeg[0])].items()
        )
        ctx.log(f"  transfer {spec.method} crafted on {a}: {metric} {cells}")
        ctx.advance()
    return out


def run_attacks(
    plan: AttackPlan,
    detectors: dict[str, dict[str, Any]],
    manifest: Manifest,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> AttackResults:
    """Run ``plan`` on trained detectors (``run_experiment``'s ``detectors`` entries: their
    ``checkpoint`` and ``patch_store``); ``manifest`` gives the cameras' own JPEG tables."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dets = {a: load_detector(d["checkpoint"], device=device) for a, d in detectors.items()}
    stores = {a: PatchStore.open(d["patch_store"]) for a, d in detectors.items()}
    steps = sum(
        len(r.eps or (None,)) * len(_target_indices(r.targets, dets[a].classes))
        for r in plan.runs
        for a in dets
        if r.detectors is None or a in r.detectors
    )
    steps += 0 if plan.transfer is None else len(plan.transfer.detectors or dets)
    results = AttackResults({"plan": _plan_dict(plan), "detectors": {}})
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("attacks", total=steps)
        ctx = _Context(plan, CameraJpeg(manifest), seed, log, lambda: bar.advance(task))
        pools = {a: build_pool(det, stores[a], plan, seed) for a, det in dets.items()}
        for a, det in dets.items():
            clean = _clean_outcome(det, pools[a], ctx)
            log(
                f"attacks on {a}: {clean['picked']} patches picked ({plan.select}) of "
                f"{clean['available']} "
                f"in '{plan.split}', {clean['examined']} examined"
            )
            runs = [
                _run_on_detector(r, i, a, det, pools[a], ctx, results.examples)
                if r.detectors is None or a in r.detectors
                else None
                for i, r in enumerate(plan.runs)
            ]
            results.metrics["detectors"][a] = {"clean": clean, "runs": runs}
        if plan.transfer is not None:
            results.metrics["transfer"] = _transfer(plan.transfer, dets, pools, ctx)
    return results


def _plan_dict(plan: AttackPlan) -> dict[str, Any]:
    notes = {
        f"{r.method} {e:g}": pixel_eps(e, r.units)[1]
        for r in (*plan.runs, plan.transfer)
        if r
        for e in r.eps
    }
    return {
        "split": plan.split,
        "patches": plan.patches,
        "select": plan.select,
        "jpeg": [_jpeg_name(j) for j in plan.jpeg],
        "eps_units": notes,
    }


# -- report -------------------------------------------------------------------------------------


def _run_rows(run: dict[str, Any], jpeg_names: list[str]) -> list[dict[str, Any]]:
    targeted = run["targeted"]
    rows = []
    for s in run["settings"]:
        if s["n"] == 0:
            continue
        o, a = s["overall"], s["attack"]
        row: dict[str, Any] = {}
        if s["eps"] is not None:
            row["ε (config)"] = f"{s['eps']:g}"
            row["ε (0-255)"] = f"{s['eps_pixels']:g}"
        if targeted:
            row["target"] = s["target"]
        row["patches"] = s["n"]
        if targeted:
            row["SAR"] = percent(o["sar"])
        row["error rate"] = percent(o["error_rate"])
        row["confidence"] = percent(o["confidence"])
        row[f"{'SAR' if targeted else 'error rate'} float (beside)"] = percent(
            a["float_success_rate"]
        )
        row["PSNR (dB)"] = "unchanged" if o["psnr"] is None else f"{o['psnr']:.1f}"
        row["SSIM"] = f"{o['ssim']:.4f}"
        row["L0"] = f"{o['l0']:.0f}"
        row["L∞"] = f"{o['linf']:.2f}"
        for name in jpeg_names:
            j = s["jpeg"][name]["overall"]
            row[f"{'SAR' if targeted else 'error rate'} after {name}"] = percent(
                j["sar" if targeted else "error_rate"]
            )
        rows.append(row)
    return rows


Curves = dict[str, list[float]]
Styles = dict[str, dict[str, Any]]
JUDGED_STYLE = {"uint8": "-", "float, beside": (0, (1, 2))}  # JPEGs: dashed


def eps_curves(runs: list[dict[str, Any]]) -> dict[tuple[float, ...], tuple[Curves, Styles]]:
    """Error rate (%) per eps of every untargeted eps sweep, grouped by their eps values: on
    uint8 (solid), float beside (dotted), after each JPEG (dashed); one colour per run."""
    groups: dict[tuple[float, ...], tuple[Curves, Styles]] = {}
    for i, run in enumerate(runs):
        settings = [s for s in run["settings"] if s["n"]]
        if run["targeted"] or len(settings) < 2 or settings[0]["eps"] is None:
            continue
        series, styles = groups.setdefault(tuple(s["eps_pixels"] for s in settings), ({}, {}))
        judged = {
            "uint8": [s["overall"]["error_rate"] for s in settings],
            "float, beside": [s["attack"]["float_success_rate"] for s in settings],
        }
        for name in settings[0]["jpeg"]:
            judged[f"after {name}"] = [s["jpeg"][name]["overall"]["error_rate"] for s in settings]
        for judge, rates in judged.items():
            label = f"{run['method']} ({judge})"
            series[label] = [100 * r for r in rates]
            styles[label] = {"color": f"C{i % 10}", "linestyle": JUDGED_STYLE.get(judge, "--")}
    return groups


def _zhao_rows(runs: list[dict[str, Any]], clean: dict[str, Any]) -> list[dict[str, Any]]:
    """Accuracy under attack per eps (Zhao Table 2 layout), one row per untargeted sweep."""
    rows = []
    for run in runs:
        if run["targeted"] or not run["settings"] or run["settings"][0]["eps"] is None:
            continue
        row = {"method": run["method"], "no attack": percent(clean.get(PLAIN, {}).get("accuracy"))}
        for s in run["settings"]:
            row[f"ε = {s['eps_pixels']:g}"] = percent(s["overall"]["accuracy"]) if s["n"] else "n/a"
        rows.append(row)
    return rows


def examples_figure(ex: Example, title: str) -> Figure:
    """Clean patch, adversarial patch, amplified perturbation and sign of the gradient
    (Güera Fig. 4), one row per patch."""
    delta = ex.adv.astype(np.float64) - ex.clean.astype(np.float64)
    gain = max(127.5 / max(float(np.abs(delta).max()), 1.0), 1.0)
    shown = np.clip(127.5 + gain * delta, 0, 255).astype(np.uint8)
    columns = [
        ("clean", ex.clean),
        ("adversarial", ex.adv),
        (f"perturbation x{gain:.3g}", shown),
        ("sign of gradient", ex.gradient_sign),
    ]
    k = len(ex.clean)
    fig = plots.new_figure(8.0, 2.2 * k + 0.4)
    fig.suptitle(title)
    for i in range(k):
        for j, (name, images) in enumerate(columns):
            ax = fig.add_subplot(k, 4, 4 * i + j + 1)
            ax.imshow(images[i], interpolation="nearest")
            ax.set_axis_off()
            label = {0: ex.pred_clean[i], 1: ex.pred_adv[i]}.get(j, "")
            ax.set_title(f"{name}\n{label}" if label else name, fontsize="small")
    return fig


def transfer_figure(matrices: dict[str, np.ndarray], archs: list[str], metric: str) -> Figure:
    """Heat maps of the transfer matrix (rows: crafted on; columns: judged by), one per JPEG
    setting, values in %."""
    fig = plots.new_figure(3.2 * len(matrices) + 1.0, 3.4)
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    image = None
    for ax, (name, m) in zip(axes, matrices.items(), strict=True):
        image = ax.imshow(100 * m, cmap="Reds", vmin=0, vmax=100)
        for (i, j), v in np.ndenumerate(m):
            if np.isfinite(v):
                ax.text(
                    j,
                    i,
                    f"{100 * v:.0f}",
                    ha="center",
                    va="center",
                    color="white" if v > 0.5 else "black",
                    fontsize="small",
                )
        ticks = np.arange(len(archs))
        ax.set_xticks(ticks, archs, rotation=45, ha="right")
        ax.set_yticks(ticks, archs)
        ax.set_xlabel("judged by")
        ax.set_title(name)
    axes[0].set_ylabel("crafted on")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label=f"{metric} (%)")
    return fig


def _add_transfer(report: Report, t: dict[str, Any], jpeg_names: list[str]) -> None:
    archs, metric = t["detectors"], METRIC_NAMES[t["metric"]]
    eps = "" if t["eps"] is None else f", eps {t['eps']:g} ({t['eps_pixels']:g} px)"
    report.heading(f"Transfer: {t['method']}{eps} (SpoC Table 4 layout)")
    report.paragraph(
        f"Rows: the detector the attack was crafted on (white box); columns: the detector "
        f"judging the attacked patches. Cells: {metric} on the uint8 "
        "output; the diagonal is the white-box case."
    )
    matrices = {}
    for name in jpeg_names:
        m = np.full((len(archs), len(archs)), np.nan)
        rows = []
        for i, a in enumerate(archs):
            src = t["sources"].get(a)
            if src is None:
                continue
            row = {
                "crafted on": a,
                "patches": src["n"],
                "PSNR (dB)": "unchanged"
                if src["distortion"]["psnr"] is None
                else f"{src['distortion']['psnr']:.1f}",
            }
            for j, b in enumerate(archs):
                m[i, j] = src["attacked"][name][b]
                row[b] = f"{percent(m[i, j])} (clean {percent(src['clean'][name][b])})"
            rows.append(row)
        matrices[name] = m
        where = "as written" if name == PLAIN else f"after JPEG {name}"
        report.table(rows, caption=f"{metric} {where}; in brackets the same patches unattacked")
    report.figure(
        transfer_figure(matrices, archs, metric),
        caption="Transfer matrix: rows crafted on, columns judged by.",
    )


def add_attack_report(
    report: Report, metrics: dict[str, Any], examples: dict[tuple[str, int], Example]
) -> None:
    """Tables and figures of :func:`run_attacks` into an experiment report."""
    plan = metrics["plan"]
    jpeg_names = [n for n in plan["jpeg"] if n != PLAIN]
    report.heading("Attacks")
    who = (
        "correctly classified patches (Güera)" if plan["select"] == "correct" else "patches (Zhao)"
    )
    report.paragraph(
        f"Up to {plan['patches']} {who} of the '{plan['split']}' split per detector, picked "
        "with the experiment seed. Success, error rate and confidence are measured on the "
        "uint8 outputs; the float-domain rate of the attack is given beside, never instead. "
        "Confidence: Güera's average of the highest soft-max probability. "
        + " ".join(f"{k}: {v}." for k, v in plan["eps_units"].items())
    )
    for arch, d in metrics["detectors"].items():
        clean = d["clean"]
        report.key_values(
            {
                "patches in split": clean["available"],
                "examined": clean["examined"],
                "attacked (picked)": clean["picked"],
                **{
                    f"clean accuracy ({name})": percent(clean.get(name, {}).get("accuracy"))
                    for name in plan["jpeg"]
                },
            },
            caption=f"{arch}: patches attacked",
        )
        runs = [r for r in d["runs"] if r is not None]
        for i, run in enumerate(d["runs"]):
            if run is None:
                continue
            kind = (
                "targeted, one row per target (Güera Table 4)" if run["targeted"] else "untargeted"
            )
            report.table(_run_rows(run, jpeg_names), caption=f"{arch} - {run['method']} ({kind})")
            if (arch, i) in examples:
                ex = examples[(arch, i)]
                report.figure(
                    examples_figure(ex, f"{arch} - {run['method']}, {ex.setting}"),
                    caption="Clean and adversarial patches with the predicted model, the "
                    "perturbation amplified, and the sign of the loss gradient at the "
                    "detector's own label (-1 black, 0 and +1 white; Güera Fig. 4).",
                )
        zhao = _zhao_rows(runs, clean)
        if zhao:
            report.table(
                zhao,
                caption=f"{arch}: accuracy under attack, ε in 0-255 units (Zhao Table 2 layout)",
            )
        for xs, (series, styles) in eps_curves(runs).items():
            report.figure(
                plots.line_figure(
                    list(xs),
                    series,
                    f"Error rate vs epsilon - {arch}",
                    "epsilon (0-255 pixel units)",
                    "error rate (%)",
                    styles,
                ),
                caption="Error rate of the attacked patches on the 8-bit output (solid), after "
                "JPEG re-compression (dashed), and in float (dotted, beside).",
            )
    if "transfer" in metrics:
        _add_transfer(report, metrics["transfer"], ["plain", *jpeg_names])
