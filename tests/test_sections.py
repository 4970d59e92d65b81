"""Experiment sections are plug-ins: a new one runs in an experiment by registration alone
(its config key checked by the schema, its metrics and report written), and the built-in
ones are exactly the experiment config's section keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from camtrace.errors import CamtraceError
from camtrace.schema import Section as ConfigSection
from camtrace.schema import option
from camtrace.workflows.config import ExperimentConfig, config_schema, parse_config
from camtrace.workflows.experiment import run_experiment
from camtrace.workflows.report import Report
from camtrace.workflows.sections import SECTIONS, Context, register_section, unregister_section
from tiny_runs import tiny_experiment

pytestmark = pytest.mark.usefixtures("one_thread")


class CountConfig(ConfigSection):
    """A toy section's settings."""

    every: int = option(1, "count every n-th eval patch", minimum=1)


class CountSection:
    """Counts the evaluation patches of each detector (a toy section)."""

    key, stage = "count", "detectors"

    def check(self, section: CountConfig, ctx: Context) -> None:
        assert ctx.manifest is None  # before any data

    def plan(self, section: CountConfig, ctx: Context) -> int:
        assert ctx.manifest is not None and ctx.split is None  # before any training
        return section.every

    def run(self, every: int, ctx: Context) -> dict[str, int]:
        out = {}
        for name, d in ctx.detectors.items():
            patches = d["identification"]["patches"]
            out[name] = len(range(0, patches, every))
        return out

    def metrics(self, result: dict[str, int]) -> dict[str, Any]:
        return {"patches": result}

    def report(self, report: Report, result: dict[str, int], ctx: Context) -> None:
        report.heading("Counted patches")
        report.table([{"detector": k, "patches": v} for k, v in result.items()])


@pytest.fixture
def counting() -> Iterator[None]:
    register_section(CountSection(), CountConfig)
    try:
        yield
    finally:
        unregister_section("count")


def test_a_new_section_runs_by_registration_alone(counting, tmp_path: Path) -> None:
    config = tiny_experiment(tmp_path, "counted", count={"every": 2})
    metrics = run_experiment(config, runs_dir=tmp_path / "runs", progress=False, log=print)
    seen = metrics["identification"]["patches"]
    assert metrics["count"] == {"patches": {"bondi2017": (seen + 1) // 2}}
    run = tmp_path / "runs" / "counted"
    assert json.loads((run / "metrics.json").read_text())["count"] == metrics["count"]
    assert "Counted patches" in (run / "report.html").read_text()


def test_a_registered_sections_key_is_in_the_schema(counting) -> None:
    assert "count" in config_schema()["properties"]
    with pytest.raises(CamtraceError, match=r"^count\.every: 0 is not allowed; use int >= 1$"):
        parse_config({"count": {"every": 0}})
    assert parse_config({"count": {}}).count == CountConfig()


def test_an_unregistered_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CamtraceError, match="^count: unknown key"):
        parse_config({"count": {"every": 2}})
    with pytest.raises(CamtraceError, match="'name' is taken"):
        register_section(type("Named", (CountSection,), {"key": "name"})(), CountConfig)


def test_the_builtin_sections_are_the_configs_optional_sections() -> None:
    core = {"name", "seed", "workdir", "data", "split", "patches", "detector", "detectors"}
    core |= {"train", "svm", "evaluate"}
    assert set(SECTIONS) == set(ExperimentConfig.model_fields) - core
    assert np.all([s.stage in ("data", "detectors") for s in SECTIONS.values()])
