"""The robustness matrix in an experiment report: heat maps and a table of every attack
against every detector, and the adaptive evaluation with its sanity checks (a failed check
in red), drawn from the metrics of
:func:`camtrace.workflows.robustness.matrix.robustness_matrix`."""

from __future__ import annotations

from typing import Any

import numpy as np

from camtrace.workflows import plots
from camtrace.workflows.attacks.report import most_read_as
from camtrace.workflows.report import Report, decibels, markdown_table, percent
from camtrace.workflows.robustness.matrix import pgd_label

_LOSS_NAMES = {  # for the reader; a loss not named here is shown by its key
    "ce": "the cross-entropy",
    "cw": "Carlini & Wagner's margin",
    "dlr": "Croce & Hein's DLR",
}


def _psnr(cell: dict[str, Any]) -> str:
    return decibels(cell.get("psnr"))


def _cell_text(cell: dict[str, Any]) -> str:
    if not cell.get("n"):
        return "n/a"
    return f"{percent(cell['error_rate'])} / {percent(cell['jpeg_error_rate'])}, {_psnr(cell)}"


def _matrices(metrics: dict[str, Any]) -> dict[str, np.ndarray]:
    rows, columns = metrics["rows"], metrics["columns"]
    out = {}
    for name, key in (
        ("uint8", "error_rate"),
        (f"after JPEG q{metrics['jpeg']}", "jpeg_error_rate"),
    ):
        m = np.full((len(rows), len(columns)), np.nan)
        for i, r in enumerate(rows):
            for j, c in enumerate(columns):
                m[i, j] = metrics["matrix"][r][c].get(key, np.nan)
        out[name] = m
    return out


def _add_adaptive(report: Report, adaptive: dict[str, Any], jpeg: int) -> None:
    report.heading("Adaptive evaluation and sanity checks")
    steps, restarts, losses = adaptive["steps"], adaptive["restarts"], adaptive["losses"]
    named = "; ".join(f"{loss}: {_LOSS_NAMES.get(loss, loss)}" for loss in losses)
    report.paragraph(
        "So gradient masking cannot pass for robustness (Athalye et al. 2018; Carlini et al. "
        f"2019; AutoAttack's checklist): PGD with {steps} steps and {restarts} random "
        f"restart(s) over an epsilon sweep up to an unbounded one, once per loss ({named}; "
        f"the checks take the strongest at each eps); PGD through JPEG q{jpeg} (the gradient "
        "through a differentiable JPEG, success judged after it); the gradient-free Square "
        f"Attack; PGD crafted on the surrogate {adaptive['surrogate']} (transfer). A check "
        f"fails when a rate is on the wrong side by more than {percent(adaptive['slack'])}."
    )
    for row, d in adaptive["rows"].items():
        cells = d["cells"]
        swept = {
            loss: {e: pgd_label(loss, steps, restarts, e) for e in adaptive["eps"]}
            for loss in losses
        }
        report.table(
            [
                {"eps": f"{e:g}", **{loss: _cell_text(cells[swept[loss][e]]) for loss in losses}}
                for e in adaptive["eps"]
            ],
            caption=f"{row}: PGD {steps}x{restarts} by eps and loss: error rate on uint8 / "
            f"after JPEG q{jpeg}, and mean PSNR",
        )
        done = {label for by_eps in swept.values() for label in by_eps.values()}
        report.table(
            [
                {
                    "attack": label,
                    "error rate (uint8)": percent(c.get("error_rate")),
                    f"after JPEG q{jpeg}": percent(c.get("jpeg_error_rate")),
                    "PSNR": _psnr(c),
                }
                for label, c in cells.items()
                if label not in done
            ],
            caption=f"{row}: the other adaptive attacks",
        )
        for check in d["checks"]:
            text = f"{row}: {check['name']}: {check['detail']}"
            if check["passed"]:
                report.paragraph(f"passed - {text}")
            else:
                report.alert(f"FAILED - {text}")


def matrix_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Per detector: clean accuracy, then per attack the error rate on uint8 / after JPEG and
    the mean PSNR."""
    return [
        {
            "detector": r,
            "clean accuracy": f"{percent(metrics['clean'][r].get('accuracy'))} / "
            f"{percent(metrics['clean'][r].get('jpeg_accuracy'))}",
            **{c: _cell_text(metrics["matrix"][r][c]) for c in metrics["columns"]},
        }
        for r in metrics["rows"]
    ]


def sink_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Per detector and attack: the camera model most attacked patches are read as."""
    return [
        {
            "detector": r,
            **{
                c: most_read_as(metrics["matrix"][r][c].get("predicted", {}))
                for c in metrics["columns"]
            },
        }
        for r in metrics["rows"]
    ]


def robustness_markdown(metrics: dict[str, Any]) -> str:
    """The docs' tables of a run's robustness matrix, from its metrics.json: error rate on
    uint8 / after JPEG and PSNR per detector and attack, then the model most patches are
    read as (noise and noise-luma are the controls)."""
    m = metrics["robustness"]
    return "\n\n".join(
        [
            f"**Error rate on uint8 / after JPEG q{m['jpeg']}, mean PSNR; eps {m['eps']:g}**",
            markdown_table(matrix_rows(m)),
            "**The camera model most attacked patches are read as**",
            markdown_table(sink_rows(m)),
        ]
    )


def add_robustness_report(report: Report, metrics: dict[str, Any]) -> None:
    """The matrix (heat maps, table) and the adaptive evaluation into ``report``."""
    report.heading("Robustness matrix")
    eps, jpeg = metrics["eps"], metrics["jpeg"]
    who = "correctly classified patches" if metrics["select"] == "correct" else "patches"
    report.paragraph(
        f"Every attack (columns) against every detector (rows) at eps {eps:g} (0-255 pixel "
        f"units; JSMA changes a fraction of the values instead), on {who} of the "
        f"'{metrics['split']}' split. Error rate of the uint8 outputs, and after JPEG "
        f"q{jpeg}; PSNR of the changed patches. {metrics['cells']} cells on "
        f"{metrics['processes']} process(es)."
    )
    report.figure(
        plots.heat_map_figure(
            _matrices(metrics),
            metrics["rows"],
            metrics["columns"],
            "error rate (%)",
            "attack",
            "detector",
        ),
        caption="Error rate (%) of every attack against every detector: on the uint8 output "
        f"(left) and after JPEG q{jpeg} (right).",
    )
    report.table(
        matrix_rows(metrics),
        caption=f"Error rate on uint8 / after JPEG q{jpeg}, and mean PSNR (clean accuracy: as "
        "written / after JPEG)",
    )
    report.table(
        sink_rows(metrics),
        caption="The camera model most attacked patches are read as, and its share: noise and "
        "noise-luma (random signs of the same eps) are the controls; where they send most "
        "patches to one model as FGSM does, the detector is noise-sensitive, not attacked",
    )
    if "adaptive" in metrics:
        _add_adaptive(report, metrics["adaptive"], jpeg)
    if "prnu" in metrics:
        _add_prnu(report, metrics["prnu"])


def _add_prnu(report: Report, prnu: dict[str, Any]) -> None:
    """Whole photos spoofed by each attack against the source and claimed devices' PRNU."""
    thr = prnu["threshold"]
    report.heading("PRNU: does an attack remove the source device's, or add the target's?")
    report.paragraph(
        f"{len(prnu['photos'])} whole evaluation photo(s) per detector and attack, spoofed as "
        "camtrace spoofs a photo (gradient attacks on the voting patches, generators on every "
        "block), written as uint8 and tested by PCE against the fingerprints of their source "
        "device and of the devices of the camera model the detector now reads (each from "
        f"{prnu['enrol']} photos of other scenes); a match is a PCE of {thr:g} or more. Caught: "
        "spoofed, yet still the source device's and no device's of the model it claims. Clean "
        "PCE against the source device: "
        + ", ".join(f"{p['photo']} {p['pce_source']:.0f}" for p in prnu["photos"])
        + ". Only a photo that matches its device when clean can be caught."
    )
    report.table(
        prnu_rows(prnu),
        caption="Per detector and attack: photos matching their source device when clean, read "
        "as another model, still matching their source device, matching a device of the model "
        "read, caught; the source device's median PCE on the whole photo and on the attacked "
        "blocks alone (clean -> spoofed)",
    )


def _median(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def prnu_rows(prnu: dict[str, Any]) -> list[dict[str, str]]:
    """Per detector and attack (``robustness.prnu`` of metrics.json): whole photos matching
    their source device when clean, read as another model, still matching their source
    device, matching a device of the model claimed, caught; the source device's median PCE on
    the whole photo and on the attacked blocks alone (clean -> spoofed)."""
    return [
        {
            "detector": row,
            "attack": column,
            "source device's when clean": f"{c['clean_matched']} / {c['n']}",
            "read as another model": f"{c['spoofed']} / {c['n']}",
            "still its source device's": f"{c['source_matched']} / {c['n']}",
            "a device of the model claimed": f"{c['claimed_matched']} / {c['spoofed']}",
            "caught": f"{c['caught']} / {c['spoofed']}",
            "median PCE, source device: clean -> spoofed": f"{_median(c['pce_source_clean'])} -> "
            f"{_median(c['pce_source'])}",
            "attacked blocks only": f"{_median(c['pce_source_blocks_clean'])} -> "
            f"{_median(c['pce_source_blocks'])}",
        }
        for row, columns in prnu["rows"].items()
        for column, c in columns.items()
    ]


def prnu_markdown(metrics: dict[str, Any]) -> str:
    """The docs' table of a run's PRNU part of the robustness matrix (:func:`prnu_rows`)."""
    return markdown_table(prnu_rows(metrics["robustness"]["prnu"]))
