"""The attack tables and figures of an experiment report, drawn from the metrics of
:func:`camtrace.workflows.attacks.run.run_attacks`: Güera Tables 3-4 and Fig. 4, Zhao
Table 2, the error-vs-epsilon curves and SpoC's Table 4 transfer matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from camtrace.workflows import plots
from camtrace.workflows.attacks.plan import PLAIN
from camtrace.workflows.report import Report, markdown_table, percent

if TYPE_CHECKING:
    from camtrace.workflows.attacks.run import Example

METRIC_NAMES = {"sar": "SAR", "error_rate": "error rate"}


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


def most_read_as(predicted: dict[str, int]) -> str:
    """The class most images are read as, and its share: ``Nimbus_N300 61%``."""
    total = sum(predicted.values())
    if not total:
        return "n/a"
    name = max(predicted, key=predicted.get)
    return f"{name} {percent(predicted[name] / total, 0)}"


def read_as_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The class most patches are read as under each untargeted sweep, per eps."""
    rows = []
    for run in runs:
        if run["targeted"] or not run["settings"] or run["settings"][0]["eps"] is None:
            continue
        row = {"method": run["method"]}
        for s in run["settings"]:
            row[f"ε = {s['eps_pixels']:g}"] = most_read_as(s["predicted"]) if s["n"] else "n/a"
        rows.append(row)
    return rows


def examples_figure(ex: Example, title: str) -> Figure:
    """Clean patch, adversarial patch, amplified perturbation and sign of the gradient
    (Güera Fig. 4), one row per patch."""
    shown, gain = plots.amplified_difference(ex.clean, ex.adv)
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
    return plots.heat_map_figure(matrices, archs, archs, f"{metric} (%)", "judged by", "crafted on")


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


def attacks_markdown(metrics: dict[str, Any]) -> str:
    """The docs' tables of a run's ``attacks`` section, from its metrics.json: per detector,
    each attack run's table (Güera Tables 3-4 layout) and the accuracy under attack per eps
    (Zhao Table 2 layout)."""
    attacks = metrics["attacks"]
    jpeg_names = [n for n in attacks["plan"]["jpeg"] if n != PLAIN]
    out = []
    for arch, d in attacks["detectors"].items():
        runs = [r for r in d["runs"] if r is not None]
        for run in runs:
            params = ", ".join(f"{k} {v}" for k, v in run["params"].items())
            kind = "targeted" if run["targeted"] else "untargeted"
            out.append(f"**`{arch}`, {run['method']}** ({kind}{'; ' + params if params else ''})")
            out.append(markdown_table(_run_rows(run, jpeg_names)))
        zhao = _zhao_rows(runs, d["clean"])
        if zhao:
            out.append(f"**`{arch}`: accuracy under attack, ε in 0-255 units**")
            out.append(markdown_table(zhao))
    return "\n\n".join(out)


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
            params = ", ".join(f"{k} {v}" for k, v in run["params"].items())
            report.table(
                _run_rows(run, jpeg_names),
                caption=f"{arch} - {run['method']} ({kind}{'; ' + params if params else ''})",
            )
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
                caption=f"{arch}: accuracy under attack, ε in 0-255 units (Zhao Table 2 layout); "
                "noise and noise-luma are the controls: random signs of the same radius",
            )
            report.table(
                read_as_rows(runs),
                caption=f"{arch}: the camera model most patches are read as under each attack "
                "and control, and its share (one model taking most answers under random noise "
                "means noise sensitivity, not a steered attack)",
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
    transfers = metrics.get("transfer", [])
    for t in transfers if isinstance(transfers, list) else [transfers]:
        _add_transfer(report, t, [PLAIN, *jpeg_names])
