"""Figures for reports: confusion matrix (Bondi 2017 Figs. 2, 4), accuracy vs voting patches
(Fig. 3), per-block attribution map (Fig. 5), and generic bar / line charts.

Figures are built on the Agg canvas directly (no pyplot), so nothing global is touched and
no window opens; each function returns a ``matplotlib.figure.Figure``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from camtrace.errors import CamtraceError
from camtrace.io import atomic_path

_DPI = 110


def new_figure(width: float, height: float) -> Figure:
    """Empty figure at the report's resolution, drawn without a display (Agg canvas)."""
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def class_colors(num_classes: int) -> np.ndarray:
    """Distinct qualitative RGBA colours: tab10, tab20, then tab20 + tab20b + tab20c (60)."""
    if num_classes <= 10:
        names = ["tab10"]
    elif num_classes <= 20:
        names = ["tab20"]
    else:
        names = ["tab20", "tab20b", "tab20c"]
    palette = np.concatenate([colormaps[n](np.arange(colormaps[n].N)) for n in names])
    return palette[np.arange(num_classes) % len(palette)]


def _row_normalise(cm: np.ndarray) -> np.ndarray:
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros_like(cm, dtype=np.float64), where=rows > 0)


def confusion_figure(cm: np.ndarray, classes: list[str], title: str) -> Figure:
    """Row-normalised confusion matrix with percentages in the cells (Bondi 2017 Fig. 2).

    Target class on rows, output class on columns; ``cm`` may hold counts or fractions.
    Empty cells are left blank so 30-class matrices stay readable.
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = len(classes)
    if cm.shape != (n, n):
        raise CamtraceError(f"cm: expected shape {(n, n)} for {n} classes, got {cm.shape}")
    percent = 100 * _row_normalise(cm)
    side = max(4.0, 0.42 * n + 2.0)
    fig = new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, shrink=0.8, label="% of target class")
    fontsize = float(np.clip(110 / max(n, 1), 5, 10))
    for (i, j), value in np.ndenumerate(percent):
        if round(value, 1) > 0:
            ax.text(
                j,
                i,
                f"{value:.1f}",
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if value > 50 else "black",
            )
    ticks = np.arange(n)
    ax.set_xticks(
        ticks,
        classes,
        rotation=45 if n <= 10 else 90,
        ha="right" if n <= 10 else "center",
        fontsize=max(fontsize, 6),
    )
    ax.set_yticks(ticks, classes, fontsize=max(fontsize, 6))
    ax.set_xlabel("Output class")
    ax.set_ylabel("Target class")
    ax.set_title(title)
    return fig


def voting_curve_figure(curves: dict[str, dict[int, float]], title: str) -> Figure:
    """Image accuracy (%) against the number of voting patches, one line per method
    (Bondi 2017 Fig. 3)."""
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    all_ks: set[int] = set()
    for method, curve in curves.items():
        ks = sorted(curve)
        all_ks.update(ks)
        ax.plot(ks, [100 * curve[k] for k in ks], marker="o", label=method)
    ax.set_xscale("log", base=2)
    ticks = sorted(all_ks)
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.minorticks_off()
    ax.set_xlabel("Number of voting patches")
    ax.set_ylabel("Image accuracy (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend()
    return fig


def _attribution_overlay(
    shape: tuple[int, int],
    labels: np.ndarray,
    positions: np.ndarray,
    patch_size: int,
    colors: np.ndarray,
    alpha: np.ndarray,
) -> np.ndarray:
    """RGBA layer of the image size with each block filled by its class colour."""
    overlay = np.zeros((*shape, 4))
    for label, (y, x), a in zip(labels, positions, alpha, strict=True):
        overlay[y : y + patch_size, x : x + patch_size, :3] = colors[label, :3]
        overlay[y : y + patch_size, x : x + patch_size, 3] = a
    return overlay


def attribution_map_figure(
    image: np.ndarray,
    labels: np.ndarray,
    positions: np.ndarray,
    patch_size: int,
    classes: list[str],
    confidence: np.ndarray | None = None,
    title: str = "",
) -> Figure:
    """Per-block attribution map (Bondi 2017 Fig. 5): each analysed block tinted by the
    colour of its predicted camera model, so a region spliced from another camera stands out.

    ``positions`` (M, 2) are the blocks' top-left (y, x) pixels, as in the patch store;
    ``confidence`` (M,) in [0, 1], if given, fades uncertain blocks. The legend lists the
    predicted models with their block counts.
    """
    image = np.asarray(image)
    labels = np.asarray(labels, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise CamtraceError(f"image: expected an (H, W, 3) array, got shape {image.shape}")
    if len(labels) != len(positions):
        raise CamtraceError(
            f"labels and positions differ in length: {len(labels)} vs {len(positions)}"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
        raise CamtraceError(f"labels: must lie in [0, {len(classes)}) to name a class")
    if len(positions) and positions.min() < 0:
        raise CamtraceError("positions: block corners must be non-negative (row, col) pixels")
    strength = np.ones(len(labels)) if confidence is None else np.clip(confidence, 0.0, 1.0)
    colors = class_colors(len(classes))
    overlay = _attribution_overlay(
        image.shape[:2], labels, positions, patch_size, colors, 0.55 * strength
    )
    height, width = image.shape[:2]
    fig = new_figure(7.0, max(3.0, 7.0 * height / width))
    ax = fig.add_subplot()
    ax.imshow(image)
    ax.imshow(overlay)
    ax.set_axis_off()
    ax.set_title(title)
    present, counts = np.unique(labels, return_counts=True)
    handles = [
        Patch(facecolor=colors[c], edgecolor="none", label=f"{classes[c]} ({count})")
        for c, count in zip(present, counts, strict=True)
    ]
    if handles:
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=min(len(handles), 3),
            title="Predicted model",
            fontsize="small",
        )
    return fig


def bar_figure(values: dict[str, float], title: str, ylabel: str) -> Figure:
    """One bar per named value, labelled with its value."""
    fig = new_figure(max(4.0, 0.45 * len(values) + 2.0), 4.0)
    ax = fig.add_subplot()
    names = list(values)
    bars = ax.bar(names, [values[name] for name in names], color="tab:blue")
    ax.bar_label(bars, fmt="%.3g", fontsize="small")
    ax.tick_params(axis="x", labelrotation=45 if len(names) > 6 else 0)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def line_figure(
    x: Sequence[float],
    series: dict[str, list[float]],
    title: str,
    xlabel: str,
    ylabel: str,
    styles: dict[str, dict[str, Any]] | None = None,
) -> Figure:
    """One line per named series over shared x values (e.g. error rate vs epsilon);
    ``styles`` gives a series matplotlib line options (colour, linestyle...)."""
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    for name, ys in series.items():
        if len(ys) != len(x):
            raise CamtraceError(f"series {name!r}: {len(ys)} values for {len(x)} x positions")
        ax.plot(x, ys, **{"marker": "o", **(styles or {}).get(name, {})}, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend()
    return fig


def heat_map_figure(
    matrices: dict[str, np.ndarray],
    rows: Sequence[str],
    columns: Sequence[str],
    label: str,
    xlabel: str,
    ylabel: str,
) -> Figure:
    """Heat maps of fractions shown in % (red, 0-100), one panel per named matrix
    (rows x columns, NaN left blank), each cell labelled with its value."""
    fig = new_figure(
        0.55 * len(columns) * len(matrices) + 2.6 * len(matrices) + 0.5, 0.4 * len(rows) + 2.4
    )
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    image = None
    for ax, (name, m) in zip(axes, matrices.items(), strict=True):
        image = ax.imshow(100 * m, cmap="Reds", vmin=0, vmax=100)
        for (i, j), v in np.ndenumerate(m):
            if np.isfinite(v):
                ax.text(
                    j,
                    i,
                    f"{100 * v:.0f}",
                    ha="center",
                    va="center",
                    color="white" if v > 0.5 else "black",
                    fontsize="small",
                )
        ax.set_xticks(np.arange(len(columns)), columns, rotation=45, ha="right")
        ax.set_yticks(np.arange(len(rows)), rows)
        ax.set_xlabel(xlabel)
        ax.set_title(name)
    axes[0].set_ylabel(ylabel)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label=label)
    return fig


def amplified_difference(clean: np.ndarray, changed: np.ndarray) -> tuple[np.ndarray, float]:
    """``changed - clean`` (uint8 images) shown around mid-grey, amplified so the largest
    difference reaches black or white (never shrunk); the image and its gain."""
    delta = changed.astype(np.float64) - clean.astype(np.float64)
    gain = max(127.5 / max(float(np.abs(delta).max()), 1.0), 1.0)
    return np.clip(127.5 + gain * delta, 0, 255).astype(np.uint8), gain


def figure_to_png_bytes(fig: Figure) -> bytes:
    """Render ``fig`` as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Atomically save ``fig``; the format follows the file suffix (PNG if none)."""
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=_DPI)


def spectra_figure(image_sets: dict[str, np.ndarray], title: str) -> Figure:
    """One panel per named set of (N, H, W, 3) uint8 images: log10 of the mean |DFT| of their
    high-pass residual, DC in the centre, one colour scale for all (Cozzolino et al. 2021,
    SpoC Fig. 4: the peaks up-sampling leaves, before and after spoofing)."""
    from camtrace.models.zhang2019 import mean_residual_spectrum

    if not image_sets:
        raise CamtraceError("spectra_figure: no image sets; pass {name: images}")
    logs = {
        name: np.log10(mean_residual_spectrum(imgs) + 1e-3) for name, imgs in image_sets.items()
    }
    lo = min(float(np.percentile(v, 1)) for v in logs.values())  # not the residual's empty DC
    hi = max(float(v.max()) for v in logs.values())
    fig = new_figure(2.6 * len(logs) + 0.8, 3.0)
    axes = fig.subplots(1, len(logs), squeeze=False)[0]
    for ax, (name, spectrum) in zip(axes, logs.items(), strict=True):
        extent = (-0.5, 0.5, 0.5, -0.5)  # Nyquist at the edges, to half a bin
        shown = ax.imshow(spectrum, cmap="magma", vmin=lo, vmax=hi, extent=extent)
        ax.set_title(name, fontsize="small")
        ax.set_xlabel("cycles / px")
    axes[0].set_ylabel("cycles / px")
    fig.colorbar(shown, ax=list(axes), label="log10 mean |DFT| of residual")
    fig.suptitle(title)
    return fig
