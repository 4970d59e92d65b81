"""The generator gallery (issue 23): for every trained generator of the zoo, a SimCam-Bench
evaluation photo of another camera model and its whole-photo spoof side by side (Chen Sec.
3.4: every tile through the generator, stitched), each with what the generator's detector
reads, the PSNR and SSIM, and the difference amplified, and its learning curves where the
run that made it is kept (``results/<config>/<name>.validation.json``); ``docs/generators.md``
lists them. Rendered from the shipped weights, the kept runs and the re-simulated bench,
never by hand: ``camtrace gallery docs``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from camtrace.attacks import make_attack
from camtrace.data.bench import bench_manifest, eval_slice, render_slice
from camtrace.evaluation.metrics import psnr, ssim
from camtrace.io import write_text
from camtrace.models.checkpoint import load_detector
from camtrace.models.zoo import GeneratorWeights, generator_zoo
from camtrace.workflows.generators.report import curves_figure
from camtrace.workflows.plots import amplified_difference, new_figure, save_figure
from camtrace.workflows.report import decibels
from camtrace.workflows.spoof import attack_image


def source_photo(target: str, model: str | None = None) -> tuple[str, np.ndarray]:
    """The first bench evaluation photo of ``model`` (default: the first camera model that
    is not ``target``)."""
    manifest = bench_manifest()
    model = model or next(m for m in manifest.models if m != target)
    (record,) = eval_slice(manifest.filter(lambda r: r.model == model), 1)
    (image,) = render_slice([record])
    return record.path, image


def judge_of(entry: GeneratorWeights) -> str:
    """The detector that reads ``entry``'s spoofs: the one it was trained against, else (SpoC,
    which never sees one) the first that measured it."""
    if entry.against:
        return entry.against[0]
    groups = entry.validation.get("measured", {}).values()
    return next(iter(next(iter(groups))["plain"]))


def spoof_pair(entry: GeneratorWeights) -> dict[str, Any]:
    """One photo through ``entry``'s generator, read by its judge as a PNG is read."""
    judge = judge_of(entry)
    detector = load_detector(judge)
    path, clean = source_photo(entry.target)
    attack = make_attack(entry.method, generator=entry.name)
    spoofed, result = attack_image(detector, clean, attack)  # judged as a lossless PNG reads
    return {
        "generator": entry.name,
        "judge": judge,
        "photo": path,
        "clean": clean,
        "spoofed": spoofed,
        "before": result.before.model,
        "after": result.after.model,
        "target": entry.target,
        "psnr": psnr(clean, spoofed),
        "ssim": ssim(clean, spoofed),
    }


def gallery_figure(pair: dict[str, Any]):
    """Original, spoof and amplified difference in a row, titled with the detector's reading."""
    diff, gain = amplified_difference(pair["clean"], pair["spoofed"])
    fig = new_figure(12, 3.6)
    panels = (
        (pair["clean"], f"original: read {pair['before']}"),
        (pair["spoofed"], f"{pair['generator']}: read {pair['after']}"),
        (diff, f"difference x{gain:g}"),
    )
    for k, (image, title) in enumerate(panels):
        ax = fig.add_subplot(1, 3, k + 1)
        ax.imshow(image)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    return fig


def _photo_rate(entry: GeneratorWeights) -> list[str]:
    """The card's whole-photo measurement, as a sentence (none when it has none)."""
    photos = entry.validation.get("measured", {}).get("photos")
    if not photos:
        return []
    sentence = (
        f"On the {photos['n']} whole eval photos its card measured (the first of each other "
        f"model), {100 * photos['sar']:.0f}% are identified as {entry.target} by the vote "
        f"(mean PSNR {decibels(photos['psnr'])})."
    )
    o = photos.get("open_set")
    if isinstance(o, dict):
        sentence += (
            f" With the detector's open set on (`camtrace identify`'s default), "
            f"{100 * o['sar']:.0f}% are, and {100 * o['rejected']:.0f}% are answered "
            f'"unknown model" ({100 * o["clean_rejected"]:.0f}% of the same photos unattacked).'
        )
    return [sentence]


def _curves(entry: GeneratorWeights, results: Path, docs: Path) -> list[str]:
    """The learning curves of ``entry``'s kept run as ``docs/generators/<name>-curves.png``
    and its Markdown (none when the run is not kept)."""
    kept = results / entry.config / f"{entry.name}.validation.json"
    if not kept.is_file():
        return []
    validation = json.loads(kept.read_text())
    reference = entry.validation.get("measured", {}).get("seen", {}).get("cfa_reference")
    title = f"{entry.name}: learning curves (validation patches)"
    save_figure(
        curves_figure(validation, title, reference),
        docs / "generators" / f"{entry.name}-curves.png",
    )
    return [f"![{entry.name} learning curves](generators/{entry.name}-curves.png)", ""]


def write_gallery(
    docs: str | Path,
    entries: dict[str, GeneratorWeights] | None = None,
    results: str | Path | None = None,
) -> Path:
    """``docs/generators/<name>.png`` per trained generator (and ``<name>-curves.png`` from
    ``results``, default beside ``docs``) and ``docs/generators.md``."""
    docs = Path(docs)
    results = docs.parent / "results" if results is None else Path(results)
    entries = generator_zoo() if entries is None else entries
    lines = [
        "# Trained generators, on whole photos",
        "",
        "Each shipped generator on a SimCam-Bench evaluation photo of another camera model,",
        "every tile through the generator with its receptive-field border (no seam); written",
        "as a lossless PNG and read back by the detector the generator was trained against",
        "(SpoC, which never sees one, by the first detector that measured it). Rendered by",
        "`camtrace gallery docs` from the shipped weights.",
        "",
    ]
    if not entries:
        lines.append("No generator is shipped yet (docs/zoo.md, Status).")
    for name, entry in entries.items():
        pair = spoof_pair(entry)
        save_figure(gallery_figure(pair), docs / "generators" / f"{name}.png")
        how = (
            f"against `{pair['judge']}`"
            if entry.against
            else f"trained against no detector, read by `{pair['judge']}`"
        )
        lines += [
            f"## `{name}` {how}",
            "",
            f"`{pair['photo']}` ({pair['before']}) -> read as **{pair['after']}** "
            f"(target {pair['target']}), PSNR {pair['psnr']:.1f} dB, SSIM {pair['ssim']:.3f}.",
            *_photo_rate(entry),
            "",
            f"![{name}](generators/{name}.png)",
            "",
            *_curves(entry, results, docs),
        ]
    path = docs / "generators.md"
    write_text(path, "\n".join(lines) + "\n")
    return path
