"""The ``spoof_detection:`` section's tables: per candidate, the false-positive rate on each
kind of clean patch and the detection rate per attack (held-out ones marked), on all attacked
patches and on those whose attack succeeded; the learned verdict on whole photos. One layout
for the HTML report and for Markdown (``<!-- table: spoof_detection RUN -->``)."""

from __future__ import annotations

from typing import Any

from camtrace.workflows.report import Report, percent


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def detection_rows(s: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the detection table of a section's metrics ``s``."""
    names = list(s["candidates"])
    header = ["evaluation patches", "in training", "n", "attack success", "PSNR dB", *names]
    rows = []
    for kind, neg in s["negatives"].items():
        flagged = [_rate(neg["flagged"][c]) for c in names]
        rows.append([kind, "clean (false positives)", str(neg["n"]), "", "", *flagged])
    for name, a in s["attacks"].items():
        psnr = a["distortion"].get("psnr")
        cells = [f"{_rate(a['detected'][c])} ({_rate(a['detected_successful'][c])})" for c in names]
        rows.append(
            [
                name,
                "held out" if a["held_out"] else "seen",
                str(a["n"]),
                _rate(a["success"]),
                "" if psnr is None else f"{psnr:.1f}",
                *cells,
            ]
        )
    return header, rows


def photo_rows(photos: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Whole photos judged by the learned verdict: how many of each kind it calls attacked."""
    a, n = photos["attack"], photos["n"]
    reached = sum(p["reached"] for p in photos["photos"])
    kinds = {
        "spoofed": f"spoofed: {a['method']}, eps {a['eps']:g}, against {a['detector']}, PNG "
        f"({reached} / {n} read as the target)",
        "clean": "clean (false positives)",
    }
    rows = [
        [kinds.get(k, f"clean re-saved as {k} (false positives)"), f"{v} / {n}"]
        for k, v in photos["flagged"].items()
    ]
    return ["whole eval photos", "called attacked"], rows


def _markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def spoof_detection_markdown(metrics: dict[str, Any]) -> str:
    """A kept run's spoof detection tables in Markdown (detection, then whole photos)."""
    s = metrics["spoof_detection"]
    lines = _markdown(*detection_rows(s))
    if "photos" in s:
        lines += ["", *_markdown(*photo_rows(s["photos"]))]
    return "\n".join(lines)


def add_spoof_detection_report(report: Report, s: dict[str, Any]) -> None:
    """The section's part of report.html."""
    report.heading("Spoof detection")
    t = s["train"]
    report.paragraph(
        f"Candidates trained on {t['patches']} patches of the train split (clean, re-saved as "
        f"JPEG at quality {t['jpeg'][0]}-{t['jpeg'][1]}, and {t['attacked']} attacked by "
        f"{', '.join(t['attacks'])} against {', '.join(s['against'])}), the best epoch chosen "
        f"on {t['val_patches']} of the val split; {s['detector']} is the run's spoof detector "
        f"({s['checkpoint']})."
    )
    header, rows = detection_rows(s)
    report.table(
        rows,
        header,
        caption="Share of the eval patches (unseen scenes and devices) each candidate calls "
        "attacked: the false-positive rate on clean ones; on attacked ones the detection rate "
        "(in brackets: on the patches whose attack reached its goal)",
    )
    report.table(
        [
            {"candidate": name, **{k: v for k, v in c["training"].items() if k != "val_accuracy"}}
            | {"val accuracy": percent(c["training"].get("val_accuracy"))}
            for name, c in s["candidates"].items()
        ],
        caption="Training",
    )
    if "photos" in s:
        header, rows = photo_rows(s["photos"])
        report.table(
            rows,
            header,
            caption="camtrace detect-spoof's learned verdict (most of the 32 voting patches "
            "called attacked) on whole photos read from disk",
        )
