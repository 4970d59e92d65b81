"""The tiny SimCam experiment the end-to-end tests share: 3 devices of the ``tiny`` preset's
models, 6 shots of 128x192, a random 50/17/33 split, 4 Bondi patches an image, one epoch and
no SVMs; each test adds its own sections. :func:`ok` runs a CLI command that must succeed;
:func:`untimed`, a training log compared without its wall-clock times."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from camtrace.cli import app


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
