"""The ``openset:`` section: every detector of the run calibrated for open-set
identification and measured against camera models held out of training."""

from __future__ import annotations

from typing import Any

from camtrace.errors import CamtraceError
from camtrace.workflows.openset.report import add_openset_report
from camtrace.workflows.openset.run import run_openset
from camtrace.workflows.report import Report
from camtrace.workflows.sections import Context


class OpenSetSection:
    """Open-set identification: known models vs held-out ones, AUROC and operating point."""

    key, stage = "openset", "detectors"

    def check(self, section: Any, ctx: Context) -> None:
        if ctx.config.data.source != "simulate":
            raise CamtraceError(
                "openset: its held-out camera models are SimCam presets shot with the data "
                "section's scenes and size, so it needs SimCam data (data.source simulate or "
                "bench)"
            )

    def plan(self, section: Any, ctx: Context) -> Any:
        return section

    def run(self, plan: Any, ctx: Context) -> dict[str, Any]:
        ctx_args = (ctx.run_dir, ctx.clock, ctx.progress, ctx.log)
        return run_openset(plan, ctx.config, ctx.specs, ctx.detectors, *ctx_args)

    def metrics(self, result: dict[str, Any]) -> dict[str, Any]:
        return result

    def report(self, report: Report, result: dict[str, Any], ctx: Context) -> None:
        add_openset_report(report, result)
