"""The ``spoof_detection:`` section of an experiment: the learned spoof detector trained on
the run's attacks against its detectors, measured on held-out attacks and clean photos."""

from __future__ import annotations

from typing import Any

from camtrace.workflows.report import Report
from camtrace.workflows.sections import Context
from camtrace.workflows.spoof_detection.report import add_spoof_detection_report
from camtrace.workflows.spoof_detection.run import (
    SpoofDetectionPlan,
    handcrafted_of,
    plan_spoof_detection,
    run_spoof_detection,
)


class SpoofDetectionSection:
    """A learned spoof detector, trained on camtrace's attacks, measured on held-out ones."""

    key, stage = "spoof_detection", "detectors"

    def check(self, section: Any, ctx: Context) -> None:
        self.plan(section, ctx)

    def plan(self, section: Any, ctx: Context) -> SpoofDetectionPlan:
        archs = {s.name: s.arch for s in ctx.specs}
        return plan_spoof_detection(section, ctx.sizes, handcrafted_of(archs))

    def run(self, plan: SpoofDetectionPlan, ctx: Context) -> dict[str, Any]:
        result = run_spoof_detection(
            plan,
            ctx.detectors,
            ctx.results.get("generators"),
            ctx.split.manifest,
            ctx.run_dir,
            ctx.config.seed,
            ctx.progress,
            ctx.log,
        )
        ctx.clock.lap("spoof detection")
        return result

    def metrics(self, result: dict[str, Any]) -> dict[str, Any]:
        return result

    def report(self, report: Report, result: dict[str, Any], ctx: Context) -> None:
        add_spoof_detection_report(report, result)
