"""The ``generators:`` section of an experiment (Chen 2019 Tables 3-4): one generator per
target trained against the detectors, measured on seen and unseen camera models."""

from __future__ import annotations

from typing import Any

from camtrace.workflows.generators.report import add_generator_report
from camtrace.workflows.generators.run import plan_generators_of, run_generators
from camtrace.workflows.report import Report
from camtrace.workflows.sections import Context


class GeneratorsSection:
    """Generators trained against the detectors, on seen and unseen models (Chen 2019)."""

    key, stage = "generators", "detectors"

    def check(self, section: Any, ctx: Context) -> None:
        return None  # its targets are checked against the camera models, in plan

    def plan(self, section: Any, ctx: Context) -> Any:
        return plan_generators_of(ctx.config, ctx.specs, ctx.manifest)

    def run(self, plan: Any, ctx: Context) -> Any:
        return run_generators(
            plan, ctx.config, ctx.specs, ctx.split, ctx.run_dir, ctx.clock, ctx.progress, ctx.log
        )

    def metrics(self, result: Any) -> dict[str, Any]:
        return result.metrics

    def report(self, report: Report, result: Any, ctx: Context) -> None:
        add_generator_report(report, result.metrics, result.examples, result.logs)
