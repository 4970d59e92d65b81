"""The generative-attack tables and figures of an experiment report, drawn from
:func:`camtrace.workflows.generators.run.evaluate_generators`: Chen et al. 2019 Tables 3-4
(ours per target, Chen's beside), the transfer table, the SAR after the target camera's JPEG,
the whole photos, the training losses and example patches (Chen Fig. 4: original, spoofed,
difference)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from camtrace.attacks.generative.methods import get_method
from camtrace.workflows import plots
from camtrace.workflows.report import Report, decibels, markdown_table, percent

if TYPE_CHECKING:
    from camtrace.workflows.generators.run import Example

GROUPS = ("seen", "unseen")


def chen_rows(paper: dict[str, Any]) -> list[dict[str, Any]]:
    """Chen's tables as one row per database: the mean over his 5 targets (min - max)."""
    rows = []
    for name, table in paper["tables"].items():
        cols = np.array([r[1:] for r in table], dtype=np.float64)
        cells = [
            f"{c.mean():.{p}f} ({c.min():.{p}f}-{c.max():.{p}f})"
            for c, p in zip(cols.T, (2, 4, 2, 2, 4, 2), strict=True)
        ]
        rows.append(
            {
                "target": f"Chen 2019, {name}: mean of 5 targets (min-max)",
                "seen SAR": cells[2] + "%",
                "seen PSNR (dB)": cells[0],
                "seen SSIM": cells[1],
                "unseen SAR": cells[5] + "%",
                "unseen PSNR (dB)": cells[3],
                "unseen SSIM": cells[4],
            }
        )
    return rows


def table_rows(targets: dict[str, Any]) -> list[dict[str, Any]]:
    """Our Chen Tables 3-4 rows: per target, SAR / m-PSNR / m-SSIM on seen and unseen."""
    rows = []
    for name, t in targets.items():
        row: dict[str, Any] = {"target": f"{name} ({t['iterations']} it.)"}
        for g in GROUPS:
            if g in t:
                row[f"{g} SAR"] = f"{percent(t[g]['sar'])} (clean {percent(t[g]['clean_sar'])})"
                row[f"{g} PSNR (dB)"] = decibels(t[g]["psnr"], 2, "")
                row[f"{g} SSIM"] = f"{t[g]['ssim']:.4f}"
        rows.append(row)
    return rows


def examples_figure(ex: Example, title: str) -> Figure:
    """Original, spoofed and amplified difference, one row per patch (Chen Fig. 4)."""
    difference, gain = plots.amplified_difference(ex.clean, ex.spoofed)
    columns = [
        ("original", ex.clean, ex.pred_clean),
        ("spoofed", ex.spoofed, ex.pred_spoofed),
        (f"difference x{gain:.3g}", difference, None),
    ]
    k = len(ex.clean)
    fig = plots.new_figure(6.0, 2.2 * k + 0.4)
    fig.suptitle(title)
    for i in range(k):
        for j, (name, images, labels) in enumerate(columns):
            ax = fig.add_subplot(k, 3, 3 * i + j + 1)
            ax.imshow(images[i], interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(f"{name}\n{labels[i]}" if labels else name, fontsize="small")
    return fig


def loss_figure(log: dict[str, Any], title: str) -> Figure:
    """Every logged loss term per iteration (Chen Eq. 2: L1, cross-entropy, adversarial;
    the discriminator's own loss)."""
    losses = log["losses"]
    names = [k for k in losses[0] if k != "iteration"]
    return plots.line_figure(
        [r["iteration"] for r in losses],
        {n: [r[n] for r in losses] for n in names},
        title,
        "iteration",
        "loss",
        {n: {"marker": None} for n in names},
    )


def curves_figure(
    validation: list[dict[str, Any]], title: str, reference: dict[str, float] | None = None
) -> Figure:
    """The learning curves (Chen's stop criterion): SAR (%, mean over the detectors), PSNR
    (dB) and SSIM (x 100) of the 8-bit outputs at every validation step; with a
    ``reference`` (demosaicer -> dB), the best classical demosaicer after the synthetic CFA
    as a dashed line."""
    steps = [v["iteration"] for v in validation]
    series = {"PSNR (dB)": [v["psnr"] for v in validation]}
    styles: dict[str, dict[str, Any]] = {}
    if reference:
        best = max(reference, key=reference.__getitem__)
        name = f"{best} after the CFA (dB)"
        series[name] = [reference[best]] * len(steps)
        styles[name] = {"marker": None, "linestyle": "--", "color": "grey"}
    if all("sar" in v for v in validation):
        series["SAR (%)"] = [100 * float(np.mean(v["sar"])) for v in validation]
    if all("ssim" in v for v in validation):
        series["SSIM x 100"] = [100 * v["ssim"] for v in validation]
    return plots.line_figure(steps, series, title, "iteration", "value", styles)


def cfa_rows(targets: dict[str, Any]) -> list[dict[str, Any]]:
    """Per target with a synthetic CFA block: the generator's seen m-PSNR beside the PSNR of
    each classical demosaicer on the same patches after the same block."""
    return [
        {
            "target": name,
            "generator (dB)": decibels(t["seen"]["psnr"], 2, ""),
            **{f"{a} (dB)": f"{db:.2f}" for a, db in t["seen"]["cfa_reference"].items()},
        }
        for name, t in targets.items()
        if "cfa_reference" in t.get("seen", {})
    ]


def photo_rows(targets: dict[str, Any]) -> list[dict[str, Any]]:
    """Per target measured on whole photos: the share identified as the target by the vote
    (closed set) and, where the detector is calibrated, by ``camtrace identify``'s open set
    with the share it answers "unknown model" (before the attack in brackets); the target's
    mean vote share and the mean PSNR."""
    rows = []
    for name, t in targets.items():
        if "photos" not in t:
            continue
        ph = t["photos"]
        row = {
            "target": name,
            "photos": ph["n"],
            "identified as the target (vote)": percent(ph["sar"]),
            "before the attack": percent(ph["clean_sar"]),
        }
        o = ph.get("open_set")
        if isinstance(o, dict):
            row["identified as the target (open set)"] = percent(o["sar"])
            row["unknown model (before)"] = (
                f"{percent(o['rejected'])} ({percent(o['clean_rejected'])})"
            )
        row["mean vote share"] = percent(ph["vote_share"])
        row["PSNR (dB)"] = decibels(ph["psnr"], 2, "")
        rows.append(row)
    return rows


def photos_figure(targets: dict[str, Any], title: str) -> Figure:
    """Per whole photo: the target's vote share against the spoof's PSNR, one colour per
    target, with the majority line: how the verdict follows the photo's content."""
    fig = plots.new_figure(6, 4)
    ax = fig.add_subplot(1, 1, 1)
    for name, t in targets.items():
        if "photos" in t:
            rows = t["photos"]["photos"]
            ax.scatter([r["psnr"] for r in rows], [100 * r["vote_share"] for r in rows], label=name)
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("PSNR of the spoofed photo (dB)")
    ax.set_ylabel("blocks read as the target (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return fig


def jpeg_rows(targets: dict[str, Any]) -> list[dict[str, Any]]:
    """Per target: SAR as written and after JPEG with the target camera's own tables."""
    groups = [g for g in GROUPS if all(g in t for t in targets.values())]
    return [
        {
            "target": name,
            **{f"{g} SAR": percent(t[g]["sar"]) for g in groups},
            **{f"{g} SAR after JPEG": percent(t["jpeg"][g]) for g in groups},
        }
        for name, t in targets.items()
    ]


def detector_rows(targets: dict[str, Any]) -> list[dict[str, Any]]:
    """Per target: each detector's SAR, those trained against (an ensemble's members) and the
    held-out judges (transfer), seen and unseen; none when one detector judges alone."""
    groups = [g for g in GROUPS if all(g in t for t in targets.values())]
    rows = []
    for name, t in targets.items():
        against = {
            a: {g: t[g]["sar_by_detector"][a] for g in groups}
            for a in t[groups[0]]["sar_by_detector"]
        }
        judged = {**against, **{f"{a} (transfer)": r for a, r in t.get("transfer", {}).items()}}
        if len(judged) < 2:
            return []
        rows.append(
            {
                "target": name,
                **{f"{a}, {g}": percent(r[g]) for a, r in judged.items() for g in groups},
            }
        )
    return rows


def validation_rows(targets: dict[str, Any], method: str) -> list[dict[str, Any]]:
    """Per target: its L1 weight alpha (a method with Chen's L1 term), its last validation
    (iteration, SAR per detector, PSNR, SSIM, seconds)."""
    perceptual = get_method(method).perceptual
    rows = []
    for name, t in targets.items():
        v = t.get("validation") or {}
        rows.append(
            {
                "target": name,
                **({"alpha": f"{t['alpha']:g}"} if perceptual and "alpha" in t else {}),
                "iterations": v.get("iteration"),
                "val SAR": " / ".join(percent(s) for s in v.get("sar", [])),
                "val PSNR (dB)": decibels(v.get("psnr"), 2, ""),
                "val SSIM": f"{v['ssim']:.3f}" if "ssim" in v else "",
                "training (s)": v.get("seconds"),
            }
        )
    return rows


def generators_markdown(metrics: dict[str, Any]) -> str:
    """The docs' tables of a run's ``generators`` section, from its metrics.json: the last
    validation per generator, our Chen Tables 3-4 rows with Chen's beside, and the SAR after
    the target camera's JPEG."""
    g = metrics["generators"]
    targets = g["targets"]
    tables = [
        validation_rows(targets, g["method"]),
        table_rows(targets) + chen_rows(g["paper"]),
        detector_rows(targets),
        jpeg_rows(targets),
        photo_rows(targets),
        cfa_rows(targets),
    ]
    return "\n\n".join(markdown_table(rows) for rows in tables if rows)


def add_generator_report(
    report: Report,
    metrics: dict[str, Any],
    examples: dict[str, Example],
    logs: dict[str, dict[str, Any]],
) -> None:
    """Tables and figures of :func:`evaluate_generators` into an experiment report."""
    method, targets = metrics["method"], metrics["targets"]
    trained_on = " + ".join(metrics["detectors"])
    p = metrics["patch_size"]
    report.heading(f"Generative attack: {method} (Chen 2019 Tables 3-4 layout)")
    unseen = metrics["unseen"]
    report.paragraph(
        f"One generator per target, trained against {trained_on} on {p}x{p} patches. SAR: share "
        f"of attacked uint8 patches {trained_on} reads as the target (mean over an ensemble); "
        "in brackets the same patches unattacked. Seen: eval-split patches of the camera models "
        "of the training data whose model is not the target (Chen counts every test patch). "
        + (
            f"Unseen: {unseen['patches']} patches of {', '.join(unseen['models'])}, camera "
            "models no part of training used."
            if unseen
            else "No unseen camera models in this config (generators.unseen)."
        )
        + f" Beside: {metrics['paper']['source']}."
    )
    report.table(
        table_rows(targets) + chen_rows(metrics["paper"]),
        caption=f"{method}: SAR, mean PSNR and mean SSIM per target (Chen's m-PSNR, m-SSIM)",
    )
    groups = [g for g in GROUPS if all(g in t for t in targets.values())]
    report.table(
        jpeg_rows(targets),
        caption="SAR as written and after JPEG with the target camera's own tables (each "
        "row: its target's)",
    )
    photos = photo_rows(targets)
    if photos:
        report.table(
            photos,
            caption=f"Whole eval photos of the seen models spoofed in one tiled pass and "
            f"identified by {metrics['detectors'][0]} as camtrace identify does (every block it "
            "votes with, not the best by quality), as a lossless PNG reads: by the vote (closed "
            "set, Chen's reading) and, where the detector is calibrated, with its open set on "
            "(camtrace identify's default), which may answer unknown model",
        )
        report.figure(
            photos_figure(targets, f"{method}: whole photos"),
            caption="Per photo: the share of its voting blocks read as the target against the "
            "spoof's PSNR; above the dashed line the photo is identified as the target "
            "(a plurality can suffice below it).",
        )
    cfa = cfa_rows(targets)
    if cfa:
        report.table(
            cfa,
            caption="Seen m-PSNR of the generator beside classical demosaicers on the same "
            "patches after the same synthetic CFA block (a reference a learned demosaicer can "
            "beat, not a bound)",
        )
    if metrics["judges"]:
        report.table(
            [
                {
                    "target": name,
                    **{
                        f"{a} ({g})": percent(t["transfer"][a][g])
                        for a in metrics["judges"]
                        for g in groups
                    },
                }
                for name, t in targets.items()
            ],
            caption=f"Transfer: SAR of the other detectors of the config on the patches "
            f"spoofed against {trained_on}",
        )
    for name in targets:
        if logs.get(name, {}).get("validation"):
            report.figure(
                curves_figure(
                    logs[name]["validation"],
                    f"{method} -> {name}: learning curves",
                    targets[name].get("seen", {}).get("cfa_reference"),
                ),
                caption="Validation SAR, PSNR and SSIM of the 8-bit outputs per validation step.",
            )
        if logs.get(name, {}).get("losses"):
            report.figure(
                loss_figure(logs[name], f"{method} -> {name}: training losses"),
                caption="Loss terms per iteration (log.json of the generator's folder).",
            )
        if name in examples:
            report.figure(
                examples_figure(examples[name], f"{method} -> {name}"),
                caption="Seen source patches, spoofed, and the difference amplified, with the "
                f"model {metrics['detectors'][0]} reads (Chen Fig. 4).",
            )
