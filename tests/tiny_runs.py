"""The tiny SimCam experiment the end-to-end tests share: 3 devices of the ``tiny`` preset's
models, 6 shots of 128x192, a random 50/17/33 split, 4 Bondi patches an image, one epoch and
no SVMs; each test adds its own sections. :func:`ok` runs a CLI command that must succeed;
:func:`cli_error`, one that must fail in one line; :func:`untimed`, a training log compared
without its wall-clock times; :func:`ijg_luma`, libjpeg's luminance table by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from camtrace.cli import app, main

# JPEG Annex K, Table K.1: the luminance quantisation table, in natural (row-major) order.
ANNEX_K_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip


def ijg_luma(quality: int) -> list[int]:
    """libjpeg's scaling of Annex K (jcparam.c): 5000 / q below 50, else 200 - 2 q percent."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(max((v * scale + 50) // 100, 1), 255) for v in ANNEX_K_LUMA]


def cli_error(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: object) -> str:
    """The one stderr line of a camtrace command that must fail with status 2."""
    monkeypatch.setattr(sys, "argv", ["camtrace", *map(str, args)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in lines[0]
    return lines[0]


def tiny_experiment(root: Path, name: str, **sections: Any) -> dict[str, Any]:
    """The config of experiment ``name`` with its cache under ``root/work``; ``sections``
    are added, or replace the shared ones."""
    return {
        "name": name,
        "seed": 1,
        "workdir": str(root / "work"),
        "data": {"source": "simulate", "preset": "tiny", "shots": 6, "size": [128, 192]},
        "split": {"protocol": "random", "fractions": [0.5, 0.17, 0.33]},
        "patches": {"protocol": "bondi", "count": 4},
        "train": {"epochs": 1},
        "svm": {"enabled": False},
        **sections,
    }


def untimed(log: Path) -> object:
    """A training log without its wall-clock and CPU times (the only part a resume may
    change)."""

    def strip(value: object) -> object:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("seconds", "cpu_seconds")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(log.read_text()))


def ok(*args: object) -> str:
    """The output of a camtrace command that must succeed."""
    result = CliRunner().invoke(app, [*map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def is_rate(value: float, n: int) -> bool:
    """A rate over ``n`` patches: a whole count of them, divided by ``n`` (a range check alone
    cannot fail)."""
    return 0 <= value <= 1 and abs(value * n - round(value * n)) < 1e-9
