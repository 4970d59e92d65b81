"""The run folder: ``metrics.json``, a self-contained ``report.html`` and ``config.yaml``.

The report is one HTML file with inline CSS and figures embedded as base64 PNG, so it reads
offline and can be mailed or archived as is.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from matplotlib.figure import Figure

from camtrace._version import __version__
from camtrace.errors import CamtraceError
from camtrace.io import write_json, write_text
from camtrace.workflows.plots import figure_to_png_bytes

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       background: #fff; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; }
h1 { margin-bottom: 0.2rem; }
.subtitle { color: #666; margin-top: 0; }
h2 { border-bottom: 1px solid #e5e5e5; padding-bottom: 0.2rem; margin-top: 2rem; }
.scroll { overflow-x: auto; margin: 1rem 0; }
table { border-collapse: collapse; font-size: 0.9rem; }
caption { caption-side: top; text-align: left; color: #555; padding-bottom: 0.3rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
thead th { background: #f6f8fa; }
table.kv th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9rem; }
.alert { color: #b00020; font-weight: 600; }
footer { margin-top: 3rem; border-top: 1px solid #e5e5e5; color: #888; font-size: 0.8rem;
         padding-top: 0.5rem; }
@media print { html { font-size: 8pt; } body { max-width: none; margin: 0; line-height: 1.3; }
               h2 { margin-top: 0.8rem; }
               figure { display: inline-block; width: 49%; vertical-align: top; margin: 0.4rem 0;
                        break-inside: avoid; }
               figure img { max-height: 7cm; width: auto; max-width: 100%; }
               footer { margin-top: 1rem; } }
"""

# A string cell that reads as a number (e.g. "93.5%", "-1.2e-3") is right-aligned too.
_NUMERIC_TEXT = re.compile(r"^[-+]?(\d[\d,]*(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*%?$")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def decibels(value: float | None, digits: int = 1, unit: str = " dB") -> str:
    """Format a PSNR cell, e.g. ``41.237 -> "41.2 dB"``; None (nothing changed): unchanged."""
    return "unchanged" if value is None else f"{value:.{digits}f}{unit}"


def percent(fraction: float | None, digits: int = 1) -> str:
    """Format a fraction as a percentage cell, e.g. ``0.935 -> "93.5%"``."""
    if fraction is None or (isinstance(fraction, float) and math.isnan(fraction)):
        return "n/a"
    return f"{100 * fraction:.{digits}f}%"


def _format_cell(value: Any, floatfmt: str) -> tuple[str, bool]:
    """Cell text (not yet escaped) and whether it is numeric (right-aligned)."""
    if value is None:
        return "", False
    if isinstance(value, bool):
        return str(value), False
    if isinstance(value, numbers.Integral):
        return str(int(value)), True
    if isinstance(value, numbers.Real):
        value = float(value)
        return ("n/a" if math.isnan(value) else format(value, floatfmt)), True
    text = str(value)
    return text, bool(_NUMERIC_TEXT.match(text.strip()))


def _table_rows(
    rows: list[dict] | list[list], header: list[str] | None
) -> tuple[list[str] | None, list[list]]:
    """Rows as lists of cell values; dict rows take their columns from ``header`` (or their
    keys in first-seen order)."""
    if not rows or not isinstance(rows[0], dict):
        return header, [list(row) for row in rows]
    if header is None:
        header = list(dict.fromkeys(key for row in rows for key in row))
    return header, [[row.get(column) for column in header] for row in rows]


def markdown_table(rows: list[dict] | list[list], header: list[str] | None = None) -> str:
    """The rows of :meth:`Report.table` as a Markdown table (the docs' result tables)."""
    header, body = _table_rows(rows, header)
    cells = [[_format_cell(v, ".2f")[0].replace("|", "\\|") for v in row] for row in body]
    lines = ["| " + " | ".join(map(str, header or [])) + " |", "|" + "---|" * len(header or [])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


class Report:
    """A self-contained HTML report assembled block by block."""

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = title
        self.subtitle = subtitle
        self.created = _now()
        self._blocks: list[str] = []

    def heading(self, text: str) -> None:
        """Start a section."""
        self._blocks.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str) -> None:
        """A paragraph of plain text."""
        self._blocks.append(f"<p>{html.escape(text)}</p>")

    def alert(self, text: str) -> None:
        """A paragraph printed in red: a failed check the reader must not miss."""
        self._blocks.append(f'<p class="alert">{html.escape(text)}</p>')

    def table(
        self,
        rows: list[dict] | list[list],
        header: list[str] | None = None,
        caption: str = "",
        floatfmt: str = ".2f",
    ) -> None:
        """A table of dicts (columns from ``header`` or the keys) or of lists.

        Floats use ``floatfmt``; use :func:`percent` for percentage cells. Numbers and
        numeric text are right-aligned.
        """
        header, body = _table_rows(rows, header)
        parts = ['<div class="scroll"><table>']
        if caption:
            parts.append(f"<caption>{html.escape(caption)}</caption>")
        if header:
            cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
            parts.append(f"<thead><tr>{cells}</tr></thead>")
        parts.append("<tbody>")
        for row in body:
            parts.append("<tr>" + "".join(self._cell(v, floatfmt) for v in row) + "</tr>")
        parts.append("</tbody></table></div>")
        self._blocks.append("".join(parts))

    @staticmethod
    def _cell(value: Any, floatfmt: str) -> str:
        text, numeric = _format_cell(value, floatfmt)
        return (
            f'<td class="num">{html.escape(text)}</td>'
            if numeric
            else f"<td>{html.escape(text)}</td>"
        )

    def figure(self, fig: Figure, caption: str = "") -> None:
        """Embed a matplotlib figure as a base64 PNG."""
        data = base64.b64encode(figure_to_png_bytes(fig)).decode("ascii")
        alt = html.escape(caption or "figure")
        block = f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
        if caption:
            block += f"<figcaption>{html.escape(caption)}</figcaption>"
        self._blocks.append(block + "</figure>")

    def key_values(self, items: dict, caption: str = "") -> None:
        """A two-column table of names and values, e.g. run metadata."""
        parts = ['<div class="scroll"><table class="kv">']
        if caption:
            parts.append(f"<caption>{html.escape(caption)}</caption>")
        for key, value in items.items():
            parts.append(f"<tr><th>{html.escape(str(key))}</th>{self._cell(value, 'g')}</tr>")
        parts.append("</table></div>")
        self._blocks.append("".join(parts))

    def html(self) -> str:
        """The whole report as one HTML document."""
        title = html.escape(self.title)
        subtitle = f'<p class="subtitle">{html.escape(self.subtitle)}</p>' if self.subtitle else ""
        body = "\n".join(self._blocks)
        footer = f"camtrace {html.escape(__version__)} &middot; created {html.escape(self.created)}"
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>{_CSS}</style></head>\n"
            f"<body><header><h1>{title}</h1>{subtitle}</header>\n<main>\n{body}\n</main>\n"
            f"<footer>{footer}</footer></body></html>\n"
        )


def _plain(obj: Any, finite_only: bool) -> Any:
    """``obj`` as plain Python (dict/list/str/int/float/bool/None) for JSON or YAML.

    NumPy values become Python ones, paths become strings; with ``finite_only`` NaN and
    infinities become ``None`` so the JSON is strict (parsable outside Python).
    """
    if isinstance(obj, dict):
        return {str(k): _plain(v, finite_only) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, finite_only) for v in obj]
    if hasattr(obj, "tolist"):
        return _plain(obj.tolist(), finite_only)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and finite_only and not math.isfinite(obj):
        return None
    return obj


def write_run(
    run_dir: str | Path,
    metrics: dict,
    report: Report | None = None,
    config: dict | None = None,
    metrics_name: str = "metrics.json",
) -> Path:
    """Write ``metrics.json`` (or ``metrics_name``; plus ``camtrace_version``, ``created`` and
    ``command`` when given in ``metrics``), ``report.html`` and ``config.yaml`` into
    ``run_dir``, each atomically.

    ``report`` and ``config`` are skipped when ``None``. Non-finite floats in the metrics are
    written as ``null``. Returns the report path, or the metrics path if there is no report.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise CamtraceError(f"run folder {run_dir} is a file; choose another run name")
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp = {"camtrace_version": __version__, "created": report.created if report else _now()}
    if "command" in metrics:
        stamp["command"] = metrics["command"]
    if config is not None:
        text = yaml.safe_dump(_plain(config, finite_only=False), sort_keys=False)
        write_text(run_dir / "config.yaml", text)
    metrics_path = run_dir / metrics_name
    # The stamp keys come first and their values win over any stale ones in ``metrics``.
    write_json(metrics_path, _plain({**stamp, **metrics, **stamp}, finite_only=True))
    if report is None:
        return metrics_path
    report_path = run_dir / "report.html"
    # Character references keep the file pure ASCII, whatever the locale's encoding.
    write_text(report_path, report.html().encode("ascii", "xmlcharrefreplace").decode("ascii"))
    return report_path
