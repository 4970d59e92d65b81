"""Result tables in Markdown files, rendered from kept runs, never typed.

A table stands between two markers naming what renders it and from what:

    <!-- table: accuracy results/quickstart -->
    ...rendered rows...
    <!-- /table -->

``accuracy RUN``: each detector's single-patch and image accuracy in the run's
``metrics.json`` (with the processor and precision that made it); ``generators RUN``: a run's
generators (last validation, Chen Tables 3-4 with Chen's beside, SAR after JPEG); ``attacks
RUN``: each attack run (Güera Tables 3-4) and the accuracy under attack per eps (Zhao Table 2);
``defenses RUN``: Zhao's Table 1 and each defence's accuracy per eps; ``zoo``: the pretrained
detectors of the registry; ``config`` and ``preset``: the references of a run config and of
a SimCam preset, from their schemas.
:func:`refresh_tables` re-renders every block of a file (``camtrace tables README.md``); a
test checks that the README equals its own refresh, so a table cannot drift from its run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from camtrace.data.simcam.preset import PRESET_SECTIONS
from camtrace.errors import CamtraceError
from camtrace.io import write_text
from camtrace.models.zoo import Weights, zoo
from camtrace.schema import reference
from camtrace.workflows.attacks.report import attacks_markdown
from camtrace.workflows.config import config_reference
from camtrace.workflows.defenses.report import defenses_markdown
from camtrace.workflows.generators.report import generators_markdown

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


def _metrics(root: Path, source: str) -> dict[str, Any]:
    path = root / source.strip() / "metrics.json"
    if not path.is_file():
        raise CamtraceError(f"{path}: no kept run for a table; keep the run's metrics.json there")
    return json.loads(path.read_text())


RENDERERS: dict[str, Callable[[Path, str], str]] = {
    "accuracy": lambda root, source: accuracy_table(_metrics(root, source)),
    "zoo": lambda root, source: zoo_markdown(zoo()),
    "config": lambda root, source: config_reference().rstrip("\n"),
    "preset": lambda root, source: reference(PRESET_SECTIONS).rstrip("\n"),
    "transfer": lambda root, source: transfer_tables(_metrics(root, source)),
    "generators": lambda root, source: generators_markdown(_metrics(root, source)),
    "attacks": lambda root, source: attacks_markdown(_metrics(root, source)),
    "defenses": lambda root, source: defenses_markdown(_metrics(root, source)),
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
                f"**{_pct(v)}**" if b == a else _pct(v)
                for b, v in ((b, src["attacked"]["plain"][b]) for b in archs)
            ]
            cells += [_pct(src["attacked"][j][a]) for j in jpegs]
            psnr = src["distortion"]["psnr"]
            cells.append("unchanged" if psnr is None else f"{psnr:.1f} dB")
            lines.append("| " + " | ".join([f"`{a}`", *cells]) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"
