"""Zhao's comparison of undefended and defended detectors in an experiment report: Table 1
(clean accuracy per patch size, one row per detector architecture and defence) and the
accuracy-vs-epsilon curves of each architecture, one line per defence (Zhao Tables 2-3 as
curves; the per-detector tables of :mod:`camtrace.workflows.attacks.report` hold the numbers).
"""

from __future__ import annotations

from typing import Any

from camtrace.workflows import plots
from camtrace.workflows.attacks.report import read_as_rows
from camtrace.workflows.report import Report, markdown_table, percent


def defense_of(d: dict[str, Any]) -> str:
    """The defence kind of a detector's metrics entry ("none" when undefended)."""
    return d.get("defense", {}).get("kind", "none")


def defense_labels(detectors: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Each detector's line in Zhao's tables: its defence, with its name where two detectors
    of one architecture and patch size share a defence (one trained two ways)."""
    count: dict[tuple[str, int, str], int] = {}
    for d in detectors.values():
        key = (d["arch"], d["patch_size"], defense_of(d))
        count[key] = count.get(key, 0) + 1
    return {
        name: defense_of(d)
        if count[(d["arch"], d["patch_size"], defense_of(d))] == 1
        else f"{defense_of(d)} ({name})"
        for name, d in detectors.items()
    }


def table1_rows(detectors: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Single-patch clean accuracy: rows (architecture, defence), columns patch sizes."""
    sizes = sorted({d["patch_size"] for d in detectors.values()})
    labels = defense_labels(detectors)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for name, d in detectors.items():
        key = (d["arch"], labels[name])
        row = rows.setdefault(key, {"detector": key[0], "defence": key[1]})
        ident = d["identification"]
        row[f"{d['patch_size']}x{d['patch_size']}"] = percent(
            ident[ident["primary"]]["patch"]["accuracy"]
        )
    return [{**r, **{f"{s}x{s}": r.get(f"{s}x{s}", "-") for s in sizes}} for r in rows.values()]


def accuracy_curves(
    detectors: dict[str, dict[str, Any]], attacked: dict[str, dict[str, Any]]
) -> dict[tuple[str, int, str], tuple[list[float], dict[str, list[float]]]]:
    """(arch, patch size, method) -> (eps values, {"<defence>, <judged>": accuracy in %})
    for every untargeted eps sweep."""
    curves: dict[tuple[str, int, str], tuple[list[float], dict[str, list[float]]]] = {}
    labels = defense_labels(detectors)
    for name, a in attacked.items():
        d = detectors[name]
        for run in a["runs"]:
            if run is None or run["targeted"] or not run["settings"]:
                continue
            settings = [s for s in run["settings"] if s["eps"] is not None and s["n"]]
            if not settings:
                continue
            xs = [s["eps_pixels"] for s in settings]
            _, series = curves.setdefault((d["arch"], d["patch_size"], run["method"]), (xs, {}))
            kind = labels[name]
            series[f"{kind}, uint8"] = [100 * s["overall"]["accuracy"] for s in settings]
            for jpeg in settings[0]["jpeg"]:
                series[f"{kind}, after {jpeg}"] = [
                    100 * s["jpeg"][jpeg]["overall"]["accuracy"] for s in settings
                ]
    return curves


def defenses_markdown(metrics: dict[str, Any]) -> str:
    """The docs' tables of Zhao's comparison, from a run's metrics.json: Table 1 (clean
    accuracy), per architecture, patch size and attack, the accuracy per eps of every
    defence on the 8-bit output and after each JPEG (Zhao Tables 2-3), and per detector the
    camera model most patches are read as under each attack and control."""
    detectors = metrics["detectors"]
    out = [markdown_table(table1_rows(detectors))]
    attacked = metrics.get("attacks", {}).get("detectors", {})
    for (arch, size, method), (xs, series) in accuracy_curves(detectors, attacked).items():
        rows = [
            {
                "defence, judged": label,
                **{f"ε = {x:g}": f"{v:.1f}%" for x, v in zip(xs, ys, strict=True)},
            }
            for label, ys in series.items()
        ]
        out.append(f"**{arch}, {size}x{size}, {method}: accuracy under attack**")
        out.append(markdown_table(rows))
    for name, d in attacked.items():  # a sink class under noise is sensitivity, not an attack
        read_as = read_as_rows([r for r in d["runs"] if r is not None])
        if read_as:
            out.append(f"**`{name}`: the camera model most patches are read as, and its share**")
            out.append(markdown_table(read_as))
    return "\n\n".join(out)


def add_defense_report(report: Report, metrics: dict[str, Any]) -> None:
    """Zhao's Table 1 and the accuracy-vs-epsilon curves, when a detector is defended."""
    detectors = metrics["detectors"]
    if all(defense_of(d) == "none" for d in detectors.values()):
        return
    report.heading("Defences (Zhao et al.)")
    report.table(
        table1_rows(detectors),
        caption="Clean single-patch accuracy, undefended vs defended (Zhao Table 1 layout)",
    )
    attacked = metrics.get("attacks", {}).get("detectors", {})
    for (arch, size, method), (xs, series) in accuracy_curves(detectors, attacked).items():
        styles = {
            label: {"linestyle": "-" if label.endswith("uint8") else "--"} for label in series
        }
        report.figure(
            plots.line_figure(
                xs,
                series,
                f"Accuracy vs epsilon - {arch}, {size}x{size}, {method}",
                "epsilon (0-255 pixel units)",
                "accuracy (%)",
                styles,
            ),
            caption="Accuracy of every attacked patch (Zhao Tables 2-3), one line per defence: "
            "on the 8-bit output (solid) and after JPEG re-compression (dashed).",
        )
