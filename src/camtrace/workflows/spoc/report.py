"""The SpoC section of an experiment report, drawn from
:func:`camtrace.workflows.spoc.run.evaluate_spoc`: SpoC's Tables 1-6 with its published
numbers beside ours, example patches (original, spoofed, amplified difference), the residual
spectra before and after spoofing (SpoC Fig. 4) and SpoC's training losses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from camtrace.workflows import plots
from camtrace.workflows.generators.report import examples_figure, loss_figure
from camtrace.workflows.report import Report, decibels, markdown_table, percent
from camtrace.workflows.spoc.plan import REC_VARIANT

if TYPE_CHECKING:
    from camtrace.workflows.spoc.run import SpocResults

KINDS = {
    "synthetic": "S = synthetic images (SpoC's setting)",
    "real": "S = real patches of the other SimCam cameras (camtrace's extension)",
}
GROUPS = {"plain": "uncompressed", "camera_jpeg": "after JPEG with the target camera's tables"}


def table_rows(
    rows: list[dict[str, Any]], classifiers: list[str], group: str
) -> list[dict[str, Any]]:
    """Our rows: block, method, PSNR and each classifier's SAR; a starred cell is white-box
    (the classifier the attack was crafted on: SpoC's red)."""
    out = []
    for r in rows:
        cells = {
            c: percent(r[group][c]) + (" *" if c == r["block"] else "")
            for c in classifiers
            if c in r[group]
        }
        out.append(
            {
                "crafted on": r["block"],
                "method": r["method"],
                "PSNR": decibels(r["psnr"], 2, ""),
                **cells,
            }
        )
    return out


def column(paper_name: str, classifiers: list[str]) -> str:
    """Our column of a classifier of SpoC's (its lower-case name is the architecture), else
    a column of its own."""
    return next((c for c in classifiers if c == paper_name.lower()), paper_name)


def paper_rows(
    rows: list[list[Any]], paper_classifiers: list[str], classifiers: list[str]
) -> list[dict[str, Any]]:
    """SpoC's published rows (block, method, PSNR, SAR % per classifier) under our columns."""
    out = []
    for block, method, psnr, *sar in rows:
        cells = {
            column(c, classifiers): f"{v:.2f}%" for c, v in zip(paper_classifiers, sar, strict=True)
        }
        out.append({"crafted on": f"SpoC 2021: {block}", "method": method, "PSNR": psnr, **cells})
    return out


def _tpr_rows(ours: dict[str, Any], paper: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "": when,
            **{a: percent(v) for a, v in ours[when].items()},
            **{f"SpoC 2021: {a}": f"{v:.2f}%" for a, v in paper[when].items()},
        }
        for when in ("before", "after")
    ]


def _tpr_caption(ours: dict[str, Any], caption: str) -> str:
    return (
        f"{caption} (before: n = {ours['n_before']}, after: n = {ours['n_after']}, "
        "the spoofs toward every target)"
    )


def spoc_tables(m: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """SpoC's Tables 3, 4, 5, 1, 2 and 6 of a run's ``spoc`` metrics, each (caption, rows),
    SpoC's published rows under ours: what the HTML report and the docs show."""
    paper = m["paper"]
    classifiers, pc = m["classifiers"], paper["classifiers"]
    table3 = {column(c, classifiers): v for c, v in paper["table3"].items()}
    tables = [
        (
            "Table 3: camera-model classifiers before any attack",
            [
                {
                    "classifier": c,
                    "accuracy (patch)": percent(m["table3"].get(c)),
                    "SpoC 2021": f"{table3[c]}%" if c in table3 else "",
                }
                for c in classifiers
            ],
        )
    ]
    for kind, rows in m["table4"].items():
        for group, label in GROUPS.items():
            theirs = paper["table4"][group] if kind == "synthetic" else []  # SpoC's setting only
            tables.append(
                (
                    f"Table 4 ({label}); {KINDS[kind]}",
                    table_rows(rows, classifiers, group) + paper_rows(theirs, pc, classifiers),
                )
            )
    for kind, rows in m["table5"].items():
        swept = any(r["method"].startswith(REC_VARIANT) for r in rows)
        sweep = "; spoc-rec-w: L_REC weighted by w" if swept else ""
        tables.append(
            (
                "Table 5: ablation (only-embedder: lambda_A = 0, only-discriminator: "
                f"lambda_E = 0{sweep}); {KINDS[kind]}",
                table_rows(rows, classifiers, "plain")
                + paper_rows([["none", *r] for r in paper["table5"]], pc, classifiers),
            )
        )
    if "table1" in m:
        caption = "Table 1: GAN-image detectors' TPR on the training sources' images"
        tables.append((_tpr_caption(m["table1"], caption), _tpr_rows(m["table1"], paper["table1"])))
    if "table2" in m:
        caption = "Table 2: GAN-image detectors' TPR on the held-out source's images"
        tables.append((_tpr_caption(m["table2"], caption), _tpr_rows(m["table2"], paper["table2"])))
        tables.append(
            (
                "Table 6: SpoC on the held-out source's images (SpoC's baselines not rerun)",
                table_rows(m["table6"], classifiers, "plain")
                + paper_rows(paper["table6"], pc, classifiers),
            )
        )
    return tables


def validation_figure(curves: dict[str, list[dict[str, Any]]], title: str) -> Figure:
    """SpoC's detector-free learning curves, a line per variant: the validation spoofs' PSNR
    (dB), the share of them within d_ref of the target's anchor e_M (%) and their mean
    embedder distance to e_M (which moves while the share is still 0)."""
    fig = plots.new_figure(14.0, 4.0)
    panels = fig.subplots(1, 3)
    series = (("psnr", 1.0), ("within_d_ref", 100.0), ("distance", 1.0))
    for variant, curve in curves.items():
        steps = [v["iteration"] for v in curve]
        for ax, (key, scale) in zip(panels, series, strict=True):
            ys = [scale * v.get(key, float("nan")) for v in curve]
            ax.plot(steps, ys, marker="o", label=variant)
    labels = ("PSNR (dB)", "within d_ref of e_M (%)", "distance to e_M")
    for ax, label in zip(panels, labels, strict=True):
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    panels[0].legend()
    fig.suptitle(title)
    return fig


def sweep_rows(m: dict[str, Any], weight: float) -> list[dict[str, Any]]:
    """The L_REC sweep of a run's ``spoc`` metrics (first kind of S): the unattacked control,
    then each variant (``spoc`` at the config's weight ``weight``) with its eval PSNR, every
    classifier's SAR as written and after the target camera's JPEG, and its validation
    curves (PSNR, share within d_ref, embedder distance) per step, averaged over the targets."""
    kind = m["inputs"][0]
    classifiers = m["classifiers"]
    control = next(r for r in m["table4"][kind] if r["method"] == "unattacked")
    curves = [c for name, c in m["validation"].items() if name.startswith(f"{kind} -> ")]

    def sar(r: dict[str, Any], group: str) -> str:
        return " / ".join(percent(r[group][c], 0) for c in classifiers)

    def curve(variant: str, key: str, scale: float, digits: int) -> str:
        steps = np.mean([[v[key] for v in c[variant]] for c in curves], axis=0)
        return ", ".join(f"{scale * v:.{digits}f}" for v in steps)

    names = " / ".join(classifiers)
    rows = [
        {
            "variant": "unattacked",
            "L_REC weight": "",
            "PSNR": "",
            f"SAR as written ({names})": sar(control, "plain"),
            "SAR after the target's JPEG": sar(control, "camera_jpeg"),
            "validation PSNR (dB) by step": "",
            "within d_ref (%) by step": "",
            "distance to e_M by step": "",
        }
    ]
    for r in m["table5"][kind]:
        v = r["method"]
        w = weight if v == "spoc" else float(v.removeprefix(REC_VARIANT))
        steps = ", ".join(str(s["iteration"]) for s in curves[0][v])
        rows.append(
            {
                "variant": v,
                "L_REC weight": f"{w:g}",
                "PSNR": decibels(r["psnr"]),
                f"SAR as written ({names})": sar(r, "plain"),
                "SAR after the target's JPEG": sar(r, "camera_jpeg"),
                "validation PSNR (dB) by step": f"{curve(v, 'psnr', 1, 1)} (at {steps})",
                "within d_ref (%) by step": curve(v, "within_d_ref", 100, 0),
                "distance to e_M by step": curve(v, "distance", 1, 3),
            }
        )
    return rows


def spoc_markdown(metrics: dict[str, Any]) -> str:
    """The docs' SpoC tables of a run's metrics.json, each under its caption in bold."""
    return "\n\n".join(
        f"**{caption}**\n\n{markdown_table(rows)}" for caption, rows in spoc_tables(metrics["spoc"])
    )


def add_spoc_report(report: Report, results: SpocResults) -> None:
    """Tables and figures of :func:`evaluate_spoc` into an experiment report."""
    m, paper = results.metrics, results.metrics["paper"]
    report.heading("SpoC (Cozzolino et al. 2021): Tables 1-6")
    report.paragraph(
        f"Targets: {', '.join(m['targets'])}; {m['patch_size']} px patches; every method tuned "
        f"to about {m['psnr_target']:g} dB (gradient attacks: the eps of the config's list "
        "whose PSNR on validation images is closest; GAP at its budget; Adv-Cam-Id stopped "
        "at the PSNR). SAR: share of spoofed patches a classifier reads as the target, "
        f"averaged over the targets; * marks white-box cells. Beside: {paper['source']}."
    )
    for caption, rows in spoc_tables(m):
        report.table(rows, caption=caption)
    if results.spectra:
        report.figure(
            plots.spectra_figure(results.spectra, "Residual spectra before and after SpoC"),
            caption="SpoC Fig. 4: the up-sampling peaks of the synthetic images, and the same "
            "images spoofed by SpoC (toward every target).",
        )
    for kind, example in results.examples.items():
        report.figure(
            examples_figure(example, f"SpoC -> {m['targets'][0]} ({kind})"),
            caption=f"{KINDS[kind]}: original, spoofed, difference amplified, with the model "
            f"{m['classifiers'][0]} reads.",
        )
    for name, curves in m.get("validation", {}).items():
        if any(curves.values()):
            report.figure(
                validation_figure(curves, f"SpoC {name}: validation"),
                caption=f"{name}: detector-free validation, a line per variant (SpoC never "
                "sees a detector): PSNR of the 8-bit spoofs, the share within d_ref of e_M, "
                "and the mean embedder distance to e_M.",
            )
    for name, log in results.logs.items():
        if log.get("losses"):
            report.figure(
                loss_figure(log, f"SpoC {name}: training losses"),
                caption="SpoC's loss terms per iteration (Eq. 1-6; the discriminator's own).",
            )
