"""Result tables in Markdown files, rendered from kept runs, never typed.

A table stands between two markers naming what renders it and from what:

    <!-- table: accuracy results/quickstart -->
    ...rendered rows...
    <!-- /table -->

``accuracy RUN``: each detector's single-patch and image accuracy in the run's
``metrics.json`` (with the processor and precision that made it); ``rendering RUN``: a
``camtrace evaluate`` run of zoo detectors on another machine's rendering of the bench, beside
their cards; ``spoof RUN``: a run's whole photos spoofed (its ``spoof:`` section), by the
vote and with the open set; ``generators RUN``: a run's
generators (last validation, Chen Tables 3-4 with Chen's beside, SAR after JPEG); ``attacks
RUN``: each attack run (Güera Tables 3-4) and the accuracy under attack per eps (Zhao Table 2);
``defenses RUN``: Zhao's Table 1 and each defence's accuracy per eps; ``robustness RUN``: the
matrix of every attack against every detector; ``prnu RUN`` and
``prnu_spoof RUN``: a run's PRNU device identification and its PRNU part of the robustness
matrix; ``openset RUN`` and ``openset_scores RUN``: a run's open-set identification, each
detector's chosen score at its operating point, and every score's AUROC;
``spoof_detection RUN``: a run's learned spoof detectors, the false-positive rate on clean and
re-saved patches and the detection rate per attack, held-out ones marked, then the verdict on
whole photos; ``spoc RUN``: SpoC's Tables 3, 4, 5, 1, 2 and 6 with SpoC's rows under ours;
``spoc_sweep RUN``: a run's sweep of SpoC's L_REC weight;
``zoo``: the pretrained detectors of the registry; ``generator_zoo``: its trained
generators; ``config`` and ``preset``: the references of a run config and of a SimCam preset,
from their schemas.
:func:`refresh_tables` re-renders every block of a file (``camtrace tables README.md``); a
test checks that the README equals its own refresh, so a table cannot drift from its run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from camtrace.data.simcam.preset import PRESET_SECTIONS
from camtrace.errors import CamtraceError
from camtrace.io import write_text
from camtrace.models.inference import UNKNOWN
from camtrace.models.zoo import GeneratorWeights, Weights, generator_zoo, zoo
from camtrace.schema import reference
from camtrace.workflows.attacks.report import attacks_markdown
from camtrace.workflows.config import config_reference
from camtrace.workflows.defenses.report import defenses_markdown
from camtrace.workflows.generators.report import generators_markdown
from camtrace.workflows.report import decibels, markdown_table, percent
from camtrace.workflows.robustness.report import prnu_markdown, robustness_markdown
from camtrace.workflows.spoc.report import spoc_markdown, sweep_rows
from camtrace.workflows.spoof_detection.report import spoof_detection_markdown
from camtrace.workflows.spoof_photos.section import spoof_rows

BLOCK = re.compile(r"(<!-- table: (\w+)( [^ >]+)? -->\n)(.*?)(<!-- /table -->)", re.DOTALL)


def zoo_markdown(entries: dict[str, Weights]) -> str:
    """The README's zoo table, rendered from the registry (never typed)."""
    lines = [
        "| name | architecture | patch | defence | single patch | image (vote) | size | "
        "training (processor, precision) | config |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for w in entries.values():
        t = w.training
        where = "" if w.shipped else ", in the cache"
        lines.append(
            f"| `{w.name}` | {w.arch} | {w.patch_size} px ({w.protocol}) | {w.defense} | "
            f"{100 * w.accuracy['patch']:.1f}% | {100 * w.accuracy['image']:.1f}% "
            f"({round(w.accuracy['image'] * w.accuracy['eval_images'])} / "
            f"{w.accuracy['eval_images']}) | {w.bytes / 2**20:.1f} MB{where} | "
            f"{t['seconds'] / 60:.0f} min, {_epochs(t['epochs'])} ({t['processor']}, "
            f"{t['isa']}, {t['precision']}) | `{w.config}` |"
        )
    return "\n".join(lines)


def _whole_photos(photos: dict[str, Any]) -> str:
    """The share of whole photos the vote identifies as the target, and where measured the
    share the open set answers "unknown model" (``camtrace identify``'s default)."""
    cell = f"{percent(photos['sar'])} of {photos['n']} at {decibels(photos['psnr'])}"
    o = photos.get("open_set")
    return cell + (f"; open set: {percent(o['rejected'])} unknown" if isinstance(o, dict) else "")


def generator_zoo_markdown(entries: dict[str, GeneratorWeights]) -> str:
    """The README's generator table, rendered from the registry: what each generator was
    trained against, what its run measured (seen patches, whole photos, or SpoC's synthetic
    S with each judge's SAR), its last validation and training time."""
    lines = [
        "| name | trained against | measured (uint8) | whole photos | last validation | "
        "training (processor) | config |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in entries.values():
        m, t = g.validation.get("measured", {}), g.training
        photos = m.get("photos")
        cpu = t.get("cpu_seconds") or t.get("seconds") or 0
        cells = [
            f"`{g.name}`" + ("" if g.storage == "float32" else f" ({g.storage})"),
            ", ".join(f"`{a}`" for a in g.against) or "no detector",
            _measured(m),
            _whole_photos(photos) if photos else "-",
            _last_validation(g.validation, t["iterations"]),
            f"{cpu / 3600:.1f} CPU h ({t['processor']}, {t['isa']})",
            f"`{g.config}`",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _last_validation(v: dict[str, Any], iterations: int) -> str:
    """Iteration, SAR (Chen's stop criterion; SpoC: the share within d_ref) and PSNR."""
    if "sar" in v:
        rate = "SAR " + " / ".join(percent(x) for x in v["sar"])
    else:
        rate = f"{percent(v['within_d_ref'])} within d_ref"
    return f"iteration {iterations}: {rate}, {decibels(v['psnr'])}"


def _measured(m: dict[str, Any]) -> str:
    """A generator card's measurement in one cell: Chen's seen / unseen SAR at m-PSNR, or
    SpoC's SAR per judge on synthetic S at its PSNR."""
    if "synthetic" in m:
        s = m["synthetic"]
        judges = ", ".join(f"`{a}` {percent(r)}" for a, r in s["plain"].items())
        return f"synthetic S: {judges} at {decibels(s['psnr'])}"
    cells = [
        f"{g} {percent(m[g]['sar'])}{_members(m[g])} at {decibels(m[g]['psnr'])}, "
        f"SSIM {m[g]['ssim']:.3f}"
        for g in ("seen", "unseen")
        if g in m
    ]
    return "; ".join(cells)


def _members(group: dict[str, Any]) -> str:
    """An ensemble's SAR per member, in brackets (nothing for one detector)."""
    by = group.get("sar_by_detector", {})
    return f" ({', '.join(f'`{a}` {percent(r)}' for a, r in by.items())})" if len(by) > 1 else ""


def _epochs(n: int) -> str:
    return f"{n} epochs" if n else "fitted, no network"


def accuracy_table(metrics: dict[str, Any]) -> str:
    """Per detector of a run: classifier, single-patch and image accuracy, and what ran it."""
    env = metrics["environment"]
    lines = [
        "| detector | classifier | single patch | image (vote) | trained |",
        "|---|---|---|---|---|",
    ]
    for name, d in metrics["detectors"].items():
        ident = d["identification"]
        head = ident[ident["primary"]]
        image = head["image"]["accuracy"]
        trained = (
            f"shipped `{d['pretrained']}`"
            if d.get("pretrained")
            else f"here ({d['precision']}, {env['processor']}, {env['isa']})"
        )
        lines.append(
            f"| `{name}` | {ident['primary']} | {100 * head['patch']['accuracy']:.1f}% | "
            f"{100 * image:.1f}% ({round(image * ident['images'])} / {ident['images']}) | "
            f"{trained} |"
        )
    return "\n".join(lines)


def rendering_table(metrics: dict[str, Any]) -> str:
    """A ``camtrace evaluate`` run of zoo detectors on a rendering of SimCam-Bench's eval
    split (another machine's): each one's correct patches and images there beside its card's."""
    env, cards = metrics["environment"], zoo()
    rows = []
    for name, d in metrics["detectors"].items():
        card = cards[name].accuracy
        here, n, images = d[card["classifier"]], d["patches"], d["images"]
        rows.append(
            {
                "detector": f"`{name}`",
                f"single patch on {env['processor']}, {env['isa']}": (
                    f"{round(here['patch']['accuracy'] * n)} / {n}"
                ),
                "its card": f"{round(card['patch'] * n)} / {n}",
                "image (vote) there": f"{round(here['image']['accuracy'] * images)} / {images}",
                "its card (image)": f"{round(card['image'] * images)} / {images}",
            }
        )
    return markdown_table(rows)


def spoof_table(metrics: dict[str, Any]) -> str:
    """A run's ``spoof:`` section: each whole photo spoofed, read back by the vote and, for a
    calibrated detector, with its open set on."""
    spoof = metrics["spoof"]
    reached = sum(p["success"] for p in spoof["photos"])
    answers = [p["open_set"] for p in spoof["photos"] if p.get("open_set") is not None]
    summary = f"{reached} of {len(spoof['photos'])} reached by the vote"
    if answers:
        summary += f"; {sum(a == UNKNOWN for a in answers)} answered unknown with the open set on"
    return markdown_table(spoof_rows(spoof)) + f"\n\n{summary}."


def spoc_sweep_table(root: Path, source: str) -> str:
    """A run's L_REC sweep (``spoc.rec_sweep``), its ``spoc`` row at the kept config's
    ``spoc.training.lambda_rec``."""
    metrics, kept = _metrics(root, source), root / source.strip() / "config.yaml"
    if "validation" not in metrics.get("spoc", {}) or not kept.is_file():
        raise CamtraceError(
            f"{kept.parent}: no kept spoc run with its config.yaml and validation curves; keep "
            "a run of a config with spoc.rec_sweep (camtrace keep RUN)"
        )
    weight = yaml.safe_load(kept.read_text())["spoc"]["training"]["lambda_rec"]
    return markdown_table(sweep_rows(metrics["spoc"], weight))


def _metrics(root: Path, source: str) -> dict[str, Any]:
    path = root / source.strip() / "metrics.json"
    if not path.is_file():
        raise CamtraceError(f"{path}: no kept run for a table; keep the run's metrics.json there")
    return json.loads(path.read_text())


RENDERERS: dict[str, Callable[[Path, str], str]] = {
    "accuracy": lambda root, source: accuracy_table(_metrics(root, source)),
    "rendering": lambda root, source: rendering_table(_metrics(root, source)),
    "spoof": lambda root, source: spoof_table(_metrics(root, source)),
    "zoo": lambda root, source: zoo_markdown(zoo()),
    "generator_zoo": lambda root, source: generator_zoo_markdown(generator_zoo()),
    "config": lambda root, source: config_reference().rstrip("\n"),
    "preset": lambda root, source: reference(PRESET_SECTIONS).rstrip("\n"),
    "transfer": lambda root, source: transfer_tables(_metrics(root, source)),
    "generators": lambda root, source: generators_markdown(_metrics(root, source)),
    "spoc": lambda root, source: spoc_markdown(_metrics(root, source)),
    "spoc_sweep": spoc_sweep_table,
    "attacks": lambda root, source: attacks_markdown(_metrics(root, source)),
    "defenses": lambda root, source: defenses_markdown(_metrics(root, source)),
    "robustness": lambda root, source: robustness_markdown(_metrics(root, source)),
    "prnu": lambda root, source: prnu_table(_metrics(root, source)),
    "prnu_spoof": lambda root, source: prnu_markdown(_metrics(root, source)),
    "openset": lambda root, source: openset_table(_metrics(root, source)),
    "openset_scores": lambda root, source: openset_scores_table(_metrics(root, source)),
    "spoof_detection": lambda root, source: spoof_detection_markdown(_metrics(root, source)),
}


def refresh_tables(text: str, root: Path) -> str:
    """``text`` with every table block re-rendered (sources relative to ``root``)."""

    def render(m: re.Match) -> str:
        kind, source = m.group(2), m.group(3) or ""
        if kind not in RENDERERS:
            raise CamtraceError(f"table: unknown kind {kind!r}; known: {', '.join(RENDERERS)}")
        return f"{m.group(1)}{RENDERERS[kind](root, source)}\n{m.group(5)}"

    return BLOCK.sub(render, text)


def keep_run(run_dir: Path, results: Path, name: str, extra: tuple[Path, ...] = ()) -> Path:
    """Keep the run a published table is rendered from: ``results/<name>/`` gets its
    metrics.json and config.yaml (and ``extra`` files, e.g. a training history)."""
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        raise CamtraceError(f"{run_dir}: no metrics.json; keep a finished run")
    kept = results / name
    kept.mkdir(parents=True, exist_ok=True)
    for src in (metrics, run_dir / "config.yaml", *extra):
        if src.is_file():
            write_text(kept / src.name, src.read_text())
    return kept


def transfer_tables(metrics: dict[str, Any]) -> str:
    """SpoC Table 4's layout from a run's transfer attacks: per method, rows crafted on,
    columns judged by (on the uint8 output), then the crafting detector's own verdict after
    each JPEG and the PSNR."""
    transfers = metrics["attacks"].get("transfer") or []
    out = []
    for t in transfers if isinstance(transfers, list) else [transfers]:
        archs, first = t["detectors"], next(iter(t["sources"].values()))
        jpegs = [j for j in first["attacked"] if j != "plain"]
        eps = f", eps {t['eps']:g}" if t["eps"] is not None else ""
        head = [f"{t['method']}{eps}, crafted on \\ judged by", *archs]
        head += [f"own, after JPEG {j}" for j in jpegs] + ["PSNR"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for a in archs:
            src = t["sources"][a]
            cells = [
                f"**{percent(v, 0)}**" if b == a else percent(v, 0)
                for b, v in ((b, src["attacked"]["plain"][b]) for b in archs)
            ]
            cells += [percent(src["attacked"][j][a], 0) for j in jpegs]
            psnr = src["distortion"]["psnr"]
            cells.append(decibels(psnr))
            lines.append("| " + " | ".join([f"`{a}`", *cells]) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def prnu_table(metrics: dict[str, Any]) -> str:
    """A run's ``prnu:`` section: device identification by the highest PCE, detection at the
    threshold (other devices: of the same model / of other models), AUC, median PCE."""
    p = metrics["prnu"]
    ident, det, pce = p["identification"], p["detection"], p["pce"]
    thr, size = f"{p['threshold']:g}", "x".join(map(str, p["image_size"][::-1]))
    enrolled = sorted({f["photos"] for f in p["fingerprints"].values()})
    lines = [
        f"| devices | photos matched | device identified | own device at PCE >= {thr} | "
        f"other devices at PCE >= {thr} (same model / other models) | AUC (all / same model) "
        "| median PCE: own / same model / other models |",
        "|---|---|---|---|---|---|---|",
        f"| {len(p['devices'])} (fingerprints of {'-'.join(map(str, enrolled))} photos) | "
        f"{p['photos']} of {size} | {100 * ident['accuracy']:.1f}% ({ident['correct']} / "
        f"{p['photos']}) | {100 * det['tpr']:.1f}% | {100 * det['fpr_same_model']:.2f}% / "
        f"{100 * det['fpr_other_models']:.2f}% | {det['auc']:.4f} / {det['auc_same_model']:.4f} "
        f"| {pce['own']['median']:.0f} / {_tenths(pce['same_model']['median'])} / "
        f"{_tenths(pce['other_models']['median'])} |",
    ]
    return "\n".join(lines)


def _tenths(value: float) -> str:
    return f"{round(value, 1) + 0.0:.1f}"  # + 0.0: no "-0.0"


def openset_table(metrics: dict[str, Any]) -> str:
    """A run's ``openset:`` section: per detector its chosen score, the known-vs-unknown AUROC
    on each test set of held-out models, and at the threshold the false rejections of known
    evaluation images, the accuracy on known models (accepted and named right) beside the
    closed-set accuracy, and the share of each test set's unknown images rejected."""
    o = metrics["openset"]
    tests = o["tests"]
    head = ["detector", "score", *(f"AUROC {t}" for t in tests), "FRR (known)"]
    head += ["accuracy on known (closed set)", *(f"rejected: {t}" for t in tests)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, d in o["detectors"].items():
        op = d["operating"][d["score"]]
        cells = [f"`{name}`", d["score"], *(f"{d['auroc'][d['score']][t]:.3f}" for t in tests)]
        cells += [f"{100 * op['frr']:.1f}%"]
        cells += [f"{100 * op['accuracy']:.1f}% ({100 * op['closed_set_accuracy']:.1f}%)"]
        cells += [f"{100 * op['unknown_rejected'][t]:.0f}%" for t in tests]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def openset_scores_table(metrics: dict[str, Any]) -> str:
    """Every open-set score's AUROC per detector, on the held-out models that chose the
    score (the chosen one in bold) and on the test sets; then each score shared by every
    detector, averaged over them."""
    o = metrics["openset"]
    sets = [o["selection"], *o["tests"]]
    head = ["detector", "score", *(f"AUROC {s}" for s in sets), "accuracy on known"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, d in o["detectors"].items():
        for score, auroc in d["auroc"].items():
            chosen = score == d["score"]
            cells = [f"`{name}`", f"**{score}**" if chosen else score]
            cells += [f"{auroc[s]:.3f}" for s in sets]
            cells.append(f"{100 * d['operating'][score]['accuracy']:.1f}%")
            lines.append("| " + " | ".join(cells) + " |")
    dets = list(o["detectors"].values())
    for score in [s for s in dets[0]["auroc"] if all(s in d["auroc"] for d in dets)]:
        cells = ["mean of the detectors", score]
        cells += [f"{np.mean([d['auroc'][score][s] for d in dets]):.3f}" for s in sets]
        accuracy = np.mean([d["operating"][score]["accuracy"] for d in dets])
        lines.append("| " + " | ".join([*cells, f"{100 * accuracy:.1f}%"]) + " |")
    return "\n".join(lines)
