"""The robustness matrix (``camtrace run robustness``): every attack against every detector,
with the adaptive evaluation that keeps gradient masking from passing for robustness.

Rows are the entries of the config's ``detectors:`` (by the name the experiment gives them,
so a defended entry is its own row), columns the attacks of the ``robustness`` section, all at
one epsilon. A cell attacks the detector's picked patches (:func:`attack_run.build_pool`)
and measures, on the uint8 outputs, the error rate (the success of an untargeted attack on
correctly classified patches) and accuracy, the same after JPEG re-compression, and the mean
PSNR of the changed patches.

The adaptive part (Athalye et al. 2018; Carlini et al. 2019; AutoAttack's checklist) adds
per detector: PGD with more steps and random restarts over an epsilon sweep up to an
unbounded epsilon, once per loss (the cross-entropy saturates where the soft-max is one-hot;
Carlini & Wagner's margin and Croce & Hein's DLR do not); PGD through the detector as
deployed, JPEG included (the gradient goes through the differentiable JPEG, EOT-style, and
success is judged after it); the gradient-free Square Attack; a transfer attack from an
undefended surrogate detector; and the sanity checks of :mod:`camtrace.evaluation.sanity` on
those rates, white-box strength being the strongest loss's.

Every cell is independent, so the cells are shared round-robin among the processes of a
``torchrun`` group (gloo on CPUs, NCCL on GPUs; :mod:`camtrace.training.distributed`), each
rank runs its slice and the results are gathered: every rank holds the merged matrix, rank 0
writes it. Each cell seeds its own randomness, so the matrix does not depend on the split.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from camtrace.attacks import ATTACKS, Jpeg, make_attack, recompress
from camtrace.attacks.generative import METHODS
from camtrace.data.patch_store import PatchStore
from camtrace.errors import CamtraceError
from camtrace.evaluation.attack_metrics import attack_metrics, outcome_from_scores, softmax_scores
from camtrace.evaluation.sanity import Evidence, sanity_checks
from camtrace.models.checkpoint import load_detector
from camtrace.training.distributed import init_from_env, world
from camtrace.workflows.attacks.run import Pool, assign_targets, build_pool
from camtrace.workflows.config import AdaptiveConfig, RobustnessConfig

ITERATIVE = ("bim", "pgd", "mifgsm", "timifgsm")
"""Matrix attacks compared with FGSM by the iterative >= single-step check."""
WHITE_BOX = ("fgsm", "llcm", *ITERATIVE)
"""Matrix attacks that follow the detector's gradient within the eps ball."""


@dataclass(frozen=True)
class Cell:
    """One attack on one detector's patches: the unit the ranks share. ``source``: the
    detector the attack is crafted on when it is not ``row`` (a transfer); ``restarts``:
    runs with seeds seed, seed + 1, ...; a patch counts if any run succeeds."""

    row: str
    method: str
    eps: float | None
    params: tuple[tuple[str, Any], ...] = ()
    restarts: int = 1
    source: str | None = None

    @property
    def key(self) -> str:
        """A name unique to what the cell computes (equal cells are run once)."""
        return json.dumps(
            [self.row, self.method, self.eps, self.params, self.restarts, self.source]
        )


def takes_eps(method: str) -> bool:
    """Whether attack ``method`` has an epsilon budget (JSMA's budget is a changed fraction)."""
    return "eps" in inspect.signature(ATTACKS[method].__init__).parameters


def _params(method: str, values: Mapping[str, Any], precision: str) -> tuple[tuple[str, Any], ...]:
    """An attack's keyword arguments, with the section's arithmetic where the attack has one."""
    if "precision" not in ATTACKS[method].inapplicable:
        values = {"precision": precision, **values}
    return _params_of(values)


Generators = Mapping[str, Mapping[str, str]]
"""Trained generators by method, each a checkpoint path by target camera model."""


def matrix_cells(
    section: RobustnessConfig, rows: Sequence[str], generators: Generators | None = None
) -> dict[str, dict[str, Cell]]:
    """The matrix: per row, per attack of the section, its cell at the section's eps; then
    one column per generative method of ``generators`` (its trained generators' budget)."""
    out = {}
    for row in rows:
        out[row] = {method: attack_cell(section, row, method) for method in section.attacks}
        for method, paths in (generators or {}).items():
            out[row][method] = Cell(row, method, None, (("generators", _params_of(paths)),))
    return out


def _params_of(values: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(values.items()))


def attack_cell(section: RobustnessConfig, row: str, method: str) -> Cell:
    """Attack ``method`` on ``row`` at the section's eps with the section's parameters."""
    eps = section.eps if takes_eps(method) else None
    return Cell(
        row, method, eps, _params(method, section.params.get(method, {}), section.precision)
    )


def strong_pgd(
    section: RobustnessConfig,
    row: str,
    eps: float,
    loss: str,
    restarts: int = 1,
    source: str | None = None,
    **extra: Any,
) -> Cell:
    """PGD on ``loss`` with the adaptive section's steps of 2.5 eps / steps (Madry et al.
    2018)."""
    steps = section.adaptive.steps  # type: ignore[union-attr]
    params = _params(
        "pgd",
        {"steps": steps, "alpha": 2.5 * eps / steps, "loss": loss, **extra},
        section.precision,
    )
    return Cell(row, "pgd", eps, params, restarts, source)


def pgd_label(loss: str, steps: int, restarts: int, eps: float) -> str:
    """The label of a strong PGD cell of the sweep."""
    return f"pgd {loss} {steps}x{restarts} eps {eps:g}"


def jpeg_label(loss: str) -> str:
    """The label of the strong PGD cell through the JPEG."""
    return f"pgd {loss} through jpeg"


def sweep(section: RobustnessConfig, adaptive: AdaptiveConfig) -> list[float]:
    """The epsilons of the PGD sweep: the section's, the matrix's and the unbounded one."""
    return sorted({*adaptive.eps, section.eps, adaptive.unbounded})


def adaptive_cells(
    section: RobustnessConfig,
    adaptive: AdaptiveConfig,
    rows: Sequence[str],
    surrogate: str,
    compatible: Callable[[str, str], bool],
) -> dict[str, dict[str, Cell]]:
    """Per row, by label: FGSM; for each loss, strong PGD at every eps of the sweep, PGD
    through the JPEG the outputs are judged after, and PGD crafted on ``surrogate`` (rows it
    is ``compatible`` with: same classes and patch size); the Square Attack."""
    out = {}
    r, eps, losses = adaptive.restarts, section.eps, adaptive.losses
    square = _params("square", {"queries": adaptive.queries}, section.precision)
    for row in rows:
        cells = {"fgsm": attack_cell(section, row, "fgsm")}
        for loss in losses:
            for e in sweep(section, adaptive):
                cells[pgd_label(loss, adaptive.steps, r, e)] = strong_pgd(section, row, e, loss, r)
        for loss in losses:
            cells[jpeg_label(loss)] = strong_pgd(
                section, row, eps, loss, jpeg=section.jpeg, through_jpeg=True
            )
        cells["square"] = Cell(row, "square", eps, square)
        if row != surrogate and compatible(surrogate, row):
            for loss in losses:
                cells[f"transfer pgd {loss} from {surrogate}"] = strong_pgd(
                    section, row, eps, loss, source=surrogate
                )
        out[row] = cells
    return out


def _surrogate(section: RobustnessConfig, rows: Sequence[str]) -> str:
    """The transfer attack's source: the one named, else the first row."""
    surrogate = (section.adaptive and section.adaptive.surrogate) or rows[0]
    if surrogate not in rows:
        raise CamtraceError(
            f"robustness.adaptive.surrogate: {surrogate} is not a detector here; "
            f"detectors: {', '.join(rows)}"
        )
    return surrogate


def launched_world() -> int:
    """How many processes ``torchrun`` launched (its WORLD_SIZE); 1 outside torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """This process's rank under ``torchrun`` (its RANK), before any process group joins;
    0 outside torchrun."""
    return int(os.environ.get("RANK", "0")) if launched_world() > 1 else 0


def share_from_rank_zero(trained: dict[str, Any] | None) -> dict[str, Any]:
    """Join torchrun's process group and give every rank what rank 0 ``trained`` (paths of
    detectors and generators). The other ranks call it with None at once and wait here while
    rank 0 prepares the data and trains; outside torchrun it returns ``trained``."""
    init_from_env()
    box = [trained]
    if world()[1] > 1:
        dist.broadcast_object_list(box, src=0)
    return box[0]


def check_robustness(section: RobustnessConfig, rows: Sequence[str]) -> None:
    """Fail before any training on a surrogate that is no detector of the config, or on an
    attack parameter its attack does not take."""
    surrogate = _surrogate(section, rows)
    extra = (
        adaptive_cells(section, section.adaptive, rows[:1], surrogate, lambda a, b: False)
        if section.adaptive
        else {}
    )
    for cells in (*matrix_cells(section, rows[:1]).values(), *extra.values()):
        for cell in cells.values():
            try:
                make_attack(cell.method, **attack_kwargs(cell))
            except CamtraceError as e:
                raise CamtraceError(f"robustness: {e}") from None


def attack_kwargs(cell: Cell) -> dict[str, Any]:
    """The keyword arguments of the cell's attack: its parameters and its eps."""
    return dict(cell.params) | ({} if cell.eps is None else {"eps": cell.eps})


def run_cell(
    cell: Cell,
    detectors: Mapping[str, nn.Module],
    pools: Mapping[str, Pool],
    jpeg: Jpeg,
    batch_size: int,
    seed: int,
) -> dict[str, Any]:
    """Attack the row's patches (crafted on ``cell.source`` for a transfer) and judge the
    uint8 outputs with the row's detector, as written and after ``jpeg``."""
    judge, crafter = detectors[cell.row], detectors[cell.source or cell.row]
    x, y = pools[cell.row].images, pools[cell.row].labels
    if len(x) == 0:
        return {"n": 0}
    adv, scores = (
        _generated(cell, judge, x, y, batch_size)
        if cell.method in METHODS
        else _crafted(cell, judge, crafter, x, y, batch_size, seed)
    )
    jpeg_adv = recompress(adv, jpeg)
    m = attack_metrics(judge, x, y, adv, jpeg_adv=jpeg_adv, batch_size=batch_size, scores=scores)
    o, j = m["overall"], m["jpeg"]["overall"]
    return {
        "n": o["n"],
        "error_rate": o["error_rate"],
        "accuracy": o["accuracy"],
        "jpeg_error_rate": j["error_rate"],
        "jpeg_accuracy": j["accuracy"],
        "psnr": o["psnr"],
        "linf": o["linf"],
        "predicted": m["predicted"],
    }


def _crafted(
    cell: Cell,
    judge: nn.Module,
    crafter: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The cell's attack crafted on ``crafter``, once per restart on the patches ``judge``
    still classifies right; with ``judge``'s soft-max on each final output (white-box: the
    attack's own verdict, ``AttackInfo.scores``; transfer: ``judge`` judges)."""
    kwargs = attack_kwargs(cell)
    adv, done = x.copy(), np.zeros(len(x), bool)
    scores = np.zeros((len(x), len(judge.classes)), np.float32)
    for r in range(cell.restarts):
        todo = np.flatnonzero(~done)
        if len(todo) == 0:
            break
        torch.manual_seed(seed + r)
        attack = make_attack(cell.method, batch_size=batch_size, seed=seed + r, **kwargs)
        adv[todo], info = attack(crafter, x[todo], labels=y[todo])
        scores[todo] = (
            info.scores.numpy()
            if crafter is judge
            else softmax_scores(judge, adv[todo], batch_size)
        )
        done[todo] = scores[todo].argmax(1) != y[todo]
    return adv, scores


def _generated(
    cell: Cell, judge: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each patch pushed toward one target camera model in turn (never its own) by that
    target's generator; a patch with no other target is left as is. With ``judge``'s
    soft-max on each output (the attack's own verdict)."""
    paths, classes = dict(dict(cell.params)["generators"]), list(judge.classes)
    targets = assign_targets(y, [classes.index(t) for t in paths if t in classes])
    adv = x.copy()
    scores = np.zeros((len(x), len(classes)), np.float32)
    for t in np.unique(targets[targets >= 0]):
        rows = targets == t
        attack = make_attack(cell.method, generator=paths[classes[t]], batch_size=batch_size)
        adv[rows], info = attack(judge, x[rows])
        scores[rows] = info.scores.numpy()
    untouched = targets < 0
    if untouched.any():
        scores[untouched] = softmax_scores(judge, x[untouched], batch_size)
    return adv, scores


def run_sharded(
    cells: Sequence[Cell], work: Callable[[Cell], dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """``work`` on every cell, shared round-robin among the ranks of the process group (if
    any); every rank gets the merged results, by cell key, in the order of ``cells``."""
    rank, size = world()
    mine = {c.key: work(c) for c in cells[rank::size]}
    if size == 1:
        return mine
    parts: list[dict[str, dict[str, Any]] | None] = [None] * size
    dist.all_gather_object(parts, mine)
    merged = {k: v for part in parts for k, v in (part or {}).items()}
    return {c.key: merged[c.key] for c in cells}


def _rate(result: Mapping[str, Any]) -> float:
    return result.get("error_rate", float("nan"))


def evidence(
    section: RobustnessConfig,
    adaptive: AdaptiveConfig,
    matrix: Mapping[str, Mapping[str, Any]],
    cells: Mapping[str, Mapping[str, Any]],
) -> Evidence:
    """The rates of one row that the sanity checks compare: its ``matrix`` white-box attacks
    and its adaptive ``cells`` (results by label). Strong PGD's rate at an eps is its
    strongest loss's there: a loss whose gradient saturates is no evidence of robustness."""
    losses, eps = adaptive.losses, sweep(section, adaptive)
    strong = f"pgd {adaptive.steps}x{adaptive.restarts} " + (
        f"(best of {', '.join(losses)})" if len(losses) > 1 else losses[0]
    )

    def best(e: float) -> float:
        return max(
            _rate(cells[pgd_label(loss, adaptive.steps, adaptive.restarts, e)]) for loss in losses
        )

    white = {m: _rate(matrix[m]) for m in WHITE_BOX if m in matrix}
    white |= {strong: best(section.eps)}
    white |= {jpeg_label(loss): _rate(cells[jpeg_label(loss)]) for loss in losses}
    return Evidence(
        single_step=_rate(cells["fgsm"]),
        iterative={
            **{m: _rate(matrix[m]) for m in ITERATIVE if m in matrix},
            strong: white[strong],
        },
        eps=eps,
        by_eps=[best(e) for e in eps],
        unbounded_eps=adaptive.unbounded,
        unbounded=best(adaptive.unbounded),
        white_box=white,
        black_box={
            k: _rate(v) for k, v in cells.items() if k == "square" or k.startswith("transfer")
        },
    )


def _clean(detector: nn.Module, pool: Pool, jpeg: Jpeg, batch_size: int) -> dict[str, Any]:
    if len(pool.labels) == 0:
        return {"n": 0}
    plain = outcome_from_scores(softmax_scores(detector, pool.images, batch_size), pool.labels)
    after = outcome_from_scores(
        softmax_scores(detector, recompress(pool.images, jpeg), batch_size), pool.labels
    )
    return {"n": plain["n"], "accuracy": plain["accuracy"], "jpeg_accuracy": after["accuracy"]}


def _compatible(
    detectors: Mapping[str, nn.Module], pools: Mapping[str, Pool]
) -> Callable[[str, str], bool]:
    """Whether a transfer from one row to another can be judged: same classes, same patches."""

    def check(a: str, b: str) -> bool:
        return (
            list(detectors[a].classes) == list(detectors[b].classes)
            and pools[a].images.shape[1:] == pools[b].images.shape[1:]
        )

    return check


def robustness_matrix(
    section: RobustnessConfig,
    detectors: Mapping[str, nn.Module],
    pools: Mapping[str, Pool],
    seed: int = 0,
    log: Callable[[str], None] = print,
    generators: Generators | None = None,
) -> dict[str, Any]:
    """The matrix (and, with ``section.adaptive``, the adaptive evaluation and its checks) of
    loaded ``detectors`` on their picked patches ``pools``, with a column per method of
    trained ``generators``, sharded over the process group; every rank returns the metrics."""
    rows, jpeg = list(detectors), Jpeg(quality=section.jpeg)
    matrix = matrix_cells(section, rows, generators)
    adaptive = section.adaptive
    surrogate = _surrogate(section, rows)
    extra = (
        adaptive_cells(section, adaptive, rows, surrogate, _compatible(detectors, pools))
        if adaptive
        else {}
    )
    cells = list(
        {c.key: c for cs in (*matrix.values(), *extra.values()) for c in cs.values()}.values()
    )
    rank, size = world()
    log(f"robustness: {len(cells)} cells on {len(rows)} detectors, {size} process(es)")

    def work(cell: Cell) -> dict[str, Any]:
        result = run_cell(cell, detectors, pools, jpeg, section.batch_size, seed)
        loss = dict(cell.params).get("loss")
        on = f" on {loss}" if loss else ""
        from_ = f" (crafted on {cell.source})" if cell.source else ""
        log(
            f"  [{rank}] {cell.row} {cell.method}{on}{from_} eps {cell.eps}: error rate "
            f"{100 * _rate(result):.1f}%"
        )
        return result

    results = run_sharded(cells, work)
    out: dict[str, Any] = {
        "eps": section.eps,
        "jpeg": section.jpeg,
        "split": section.split,
        "select": section.select,
        "rows": rows,
        "columns": list(matrix[rows[0]]),
        "processes": size,
        "cells": len(cells),
        "clean": {r: _clean(detectors[r], pools[r], jpeg, section.batch_size) for r in rows},
        "matrix": {r: {m: results[c.key] for m, c in matrix[r].items()} for r in rows},
    }
    if adaptive:
        by_row = {r: {label: results[c.key] for label, c in extra[r].items()} for r in rows}
        checked = {r: _checked(section, adaptive, out["matrix"][r], by_row[r]) for r in rows}
        out["adaptive"] = {
            "surrogate": surrogate,
            "slack": adaptive.slack,
            "steps": adaptive.steps,
            "restarts": adaptive.restarts,
            "losses": list(adaptive.losses),
            "eps": sweep(section, adaptive),
            "rows": checked,
        }
        out["checks_passed"] = all(v["passed"] is not False for v in checked.values())
    return out


def _checked(
    section: RobustnessConfig,
    adaptive: AdaptiveConfig,
    matrix: Mapping[str, Mapping[str, Any]],
    cells: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """A row's adaptive cells with the sanity checks on them (none on an empty pool)."""
    if not cells["fgsm"].get("n"):
        return {"cells": cells, "checks": [], "passed": None}
    checks = sanity_checks(evidence(section, adaptive, matrix, cells), adaptive.slack)
    return {
        "cells": cells,
        "checks": [c.as_dict() for c in checks],
        "passed": all(c.passed for c in checks),
    }


def run_robustness(
    section: RobustnessConfig,
    detectors: Mapping[str, Mapping[str, Any]],
    seed: int = 0,
    log: Callable[[str], None] = print,
    generators: Generators | None = None,
) -> dict[str, Any]:
    """The matrix on an experiment's trained detectors (``run_experiment``'s ``detectors``
    entries: their ``checkpoint`` and ``patch_store``), rows named by the entries' keys, and
    its trained ``generators``."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if world()[1] > 1 and device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"
    dets = {name: load_detector(d["checkpoint"], device=device) for name, d in detectors.items()}
    pools = {
        name: build_pool(dets[name], PatchStore.open(d["patch_store"]), section, seed)
        for name, d in detectors.items()
    }
    return robustness_matrix(section, dets, pools, seed, log, generators)
