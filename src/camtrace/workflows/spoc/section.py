"""The ``spoc:`` section of an experiment: SpoC's Tables 1-6 (Cozzolino et al. 2021)."""

from __future__ import annotations

from typing import Any

from camtrace.workflows.report import Report
from camtrace.workflows.sections import Context
from camtrace.workflows.spoc.plan import plan_spoc
from camtrace.workflows.spoc.report import add_spoc_report
from camtrace.workflows.spoc.run import run_spoc


class SpocSection:
    """SpoC's Tables 1-6 (Cozzolino et al. 2021)."""

    key, stage = "spoc", "detectors"

    def check(self, section: Any, ctx: Context) -> None:
        return None  # its targets are checked against the camera models, in plan

    def plan(self, section: Any, ctx: Context) -> Any:
        return plan_spoc(section, ctx.sizes, ctx.manifest.models, ctx.config.seed)

    def run(self, plan: Any, ctx: Context) -> Any:
        return run_spoc(plan, ctx.config, ctx.split, ctx.run_dir, ctx.clock, ctx.progress, ctx.log)

    def metrics(self, result: Any) -> dict[str, Any]:
        return result.metrics

    def report(self, report: Report, result: Any, ctx: Context) -> None:
        add_spoc_report(report, result)
