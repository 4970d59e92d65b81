"""The ``attacks:`` section of an experiment (Güera 2018 Tables 3-4, Zhao 2019 Tables 2-3,
SpoC Table 4): white-box and transfer attacks on the trained detectors."""

from __future__ import annotations

from typing import Any

from camtrace.models.registry import model_spec
from camtrace.workflows.attacks.plan import plan_attacks
from camtrace.workflows.attacks.report import add_attack_report
from camtrace.workflows.attacks.run import run_attacks
from camtrace.workflows.report import Report
from camtrace.workflows.sections import Context


class AttacksSection:
    """White-box and transfer attacks on the trained detectors (Güera, Zhao, SpoC Table 4)."""

    key, stage = "attacks", "detectors"

    def check(self, section: Any, ctx: Context) -> None:
        self.plan(section, ctx)  # builds every attack once, checking its parameters

    def plan(self, section: Any, ctx: Context) -> Any:
        gradient_free = [s.name for s in ctx.specs if model_spec(s.arch).handcrafted]
        return plan_attacks(section, ctx.sizes, gradient_free)

    def run(self, plan: Any, ctx: Context) -> Any:
        result = run_attacks(
            plan, ctx.detectors, ctx.split.manifest, ctx.config.seed, ctx.progress, ctx.log
        )
        ctx.clock.lap("attacks")
        return result

    def metrics(self, result: Any) -> dict[str, Any]:
        return result.metrics

    def report(self, report: Report, result: Any, ctx: Context) -> None:
        add_attack_report(report, result.metrics, result.examples)
