"""Figures, the self-contained HTML report and the run folder writer."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import yaml
from matplotlib.figure import Figure

from camtrace._version import __version__
from camtrace.errors import CamtraceError
from camtrace.workflows.plots import (
    attribution_map_figure,
    bar_figure,
    confusion_figure,
    figure_to_png_bytes,
    line_figure,
    save_figure,
    voting_curve_figure,
)
from camtrace.workflows.report import Report, percent, write_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ["Nikon_D70", "Canon_Ixus70", "Sony_H50"]


def _strict_json(text: str) -> dict:
    def reject(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


def test_confusion_figure_shows_row_percentages():
    fig = confusion_figure(np.array([[3, 1, 0], [0, 4, 0], [1, 1, 2]]), CLASSES, "Patches")
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == sorted(["75.0", "25.0", "100.0", "25.0", "25.0", "50.0"])
    assert fig.axes[0].get_ylabel() == "Target class"
    assert figure_to_png_bytes(fig).startswith(PNG_SIGNATURE)
    with pytest.raises(CamtraceError, match="cm"):
        confusion_figure(np.eye(2), CLASSES, "wrong size")


def test_confusion_figure_many_classes_renders():
    classes = [f"model_{i:02d}" for i in range(25)]
    cm = np.random.default_rng(0).integers(0, 5, size=(25, 25)) + 40 * np.eye(25, dtype=int)
    assert figure_to_png_bytes(confusion_figure(cm, classes, "25 models")).startswith(PNG_SIGNATURE)


def test_attribution_map_tints_blocks_by_predicted_model():
    image = np.full((64, 96, 3), 128, dtype=np.uint8)
    positions = np.array([(0, 0), (0, 32), (0, 64), (32, 0), (32, 32), (32, 64)])
    labels = np.array([0, 0, 0, 0, 2, 0])  # one block "spliced" from Sony_H50
    fig = attribution_map_figure(
        image, labels, positions, 32, CLASSES, confidence=np.full(6, 0.5), title="splice"
    )
    overlay = fig.axes[0].images[1].get_array()
    assert overlay.shape == (64, 96, 4)
    assert not np.allclose(overlay[40, 40, :3], overlay[10, 10, :3])  # distinct model colours
    assert overlay[40, 40, 3] == pytest.approx(0.55 * 0.5)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["Nikon_D70 (5)", "Sony_H50 (1)"]
    assert figure_to_png_bytes(fig).startswith(PNG_SIGNATURE)
    with pytest.raises(CamtraceError, match="labels"):
        attribution_map_figure(image, labels + 1, positions, 32, CLASSES)


def test_curve_bar_and_line_figures(tmp_path):
    curves = {"CNN + SVM": {1: 0.93, 4: 0.97, 32: 0.99}, "Chen": {1: 0.8, 4: 0.9, 32: 0.95}}
    figures = [
        voting_curve_figure(curves, "Voting"),
        bar_figure({"clean": 0.95, "FGSM": 0.12}, "Accuracy", "accuracy"),
        line_figure([0, 1, 2, 4], {"FGSM": [0.95, 0.5, 0.2, 0.05]}, "Attack", "epsilon", "acc"),
    ]
    for fig in figures:
        assert isinstance(fig, Figure)
    assert [line.get_xdata().tolist() for line in figures[0].axes[0].lines] == [[1, 4, 32]] * 2
    save_figure(figures[0], tmp_path / "voting.png")
    save_figure(figures[1], tmp_path / "bars.svg")
    assert (tmp_path / "voting.png").read_bytes().startswith(PNG_SIGNATURE)
    assert b"<svg" in (tmp_path / "bars.svg").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.svg", "voting.png"]
    with pytest.raises(CamtraceError, match="FGSM"):
        line_figure([0, 1], {"FGSM": [1.0]}, "t", "x", "y")


def _sample_report() -> Report:
    report = Report("<Camera & Co> evaluation", subtitle='Dresden "natural" split')
    report.heading("Accuracy")
    report.paragraph("Patches <64x64> voted per image.")
    report.table(
        [{"model": "Nikon_D70", "accuracy": percent(0.935), "n": 200, "loss": 0.12345}],
        caption="Per-model accuracy",
    )
    report.table([["a", 1.5], ["b", float("nan")]], header=["name", "value"], floatfmt=".1f")
    report.figure(bar_figure({"clean": 0.95}, "Accuracy", "accuracy"), caption="Clean accuracy")
    report.key_values({"seed": 0, "data": "dresden.csv"}, caption="Run")
    return report


def test_report_html_escapes_and_embeds():
    page = _sample_report().html()
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>&lt;Camera &amp; Co&gt; evaluation</title>" in page
    assert "<Camera" not in page and "<64x64>" not in page
    assert "&quot;natural&quot;" in page
    assert "<caption>Per-model accuracy</caption>" in page
    assert "<th>model</th><th>accuracy</th><th>n</th><th>loss</th>" in page
    assert '<td class="num">93.5%</td>' in page
    assert '<td class="num">200</td>' in page and '<td class="num">0.12</td>' in page
    assert "<td>Nikon_D70</td>" in page
    assert '<td class="num">1.5</td>' in page and '<td class="num">n/a</td>' in page
    assert "<th>seed</th>" in page
    match = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match and base64.b64decode(match.group(1)).startswith(PNG_SIGNATURE)
    assert f"camtrace {__version__}" in page
    assert "http://" not in page and "https://" not in page  # no external assets


def test_percent():
    assert percent(0.935) == "93.5%"
    assert percent(1.0, digits=0) == "100%"
    assert percent(None) == "n/a"


def test_write_run_writes_three_files(tmp_path):
    run = tmp_path / "runs" / "eval_dresden"
    report = _sample_report()
    metrics = {
        "command": "camtrace evaluate",
        "accuracy": 0.93,
        "psnr": float("inf"),
        "per_class": np.array([0.5, np.nan]),
    }
    config = {"data": tmp_path / "dresden.csv", "seed": 0, "ks": (1, 2, 4)}
    path = write_run(run, metrics, report=report, config=config)
    assert path == run / "report.html"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "metrics.json", "report.html"]
    saved = _strict_json((run / "metrics.json").read_text())
    assert list(saved)[:3] == ["camtrace_version", "created", "command"]
    assert saved["camtrace_version"] == __version__
    assert saved["created"] == report.created
    assert saved["command"] == "camtrace evaluate"
    assert saved["psnr"] is None and saved["per_class"] == [0.5, None]
    assert yaml.safe_load((run / "config.yaml").read_text()) == {
        "data": str(tmp_path / "dresden.csv"),
        "seed": 0,
        "ks": [1, 2, 4],
    }
    assert (run / "report.html").read_text() == report.html()
    assert metrics["per_class"].shape == (2,)  # the caller's dict is left untouched
    assert "camtrace_version" not in metrics


def test_write_run_without_report_and_onto_a_file(tmp_path):
    path = write_run(tmp_path / "run", {"accuracy": 1.0})
    assert path == tmp_path / "run" / "metrics.json"
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]
    assert _strict_json(path.read_text())["accuracy"] == 1.0
    (tmp_path / "taken").write_text("")
    with pytest.raises(CamtraceError, match="taken"):
        write_run(tmp_path / "taken", {"accuracy": 1.0})
