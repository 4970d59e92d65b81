"""The ``robustness:`` section of an experiment: the matrix of every attack against every
detector and the adaptive evaluation, shared by the processes of torchrun; with ``prnu``, then
whole photos spoofed by each attack and tested against the devices' PRNU (rank 0)."""

from __future__ import annotations

from typing import Any

from camtrace.workflows.generators.run import generator_paths
from camtrace.workflows.report import Report
from camtrace.workflows.robustness.matrix import (
    check_robustness,
    run_robustness,
    share_from_rank_zero,
)
from camtrace.workflows.robustness.prnu import prnu_check
from camtrace.workflows.robustness.report import add_robustness_report
from camtrace.workflows.sections import Context


class RobustnessSection:
    """Every attack against every detector, and the adaptive checks; under torchrun the
    processes share its cells (``follow``: the ranks other than 0)."""

    key, stage = "robustness", "detectors"

    def check(self, section: Any, ctx: Context) -> None:
        check_robustness(section, list(ctx.sizes))

    def plan(self, section: Any, ctx: Context) -> Any:
        return section

    def follow(self, section: Any, ctx: Context) -> None:
        run_robustness(section, **share_from_rank_zero(None), seed=ctx.config.seed, log=ctx.log)

    def run(self, plan: Any, ctx: Context) -> dict[str, Any]:
        generators = ctx.results.get("generators")
        trained = {"detectors": ctx.detectors, "generators": generator_paths(generators)}
        result = run_robustness(
            plan, **share_from_rank_zero(trained), seed=ctx.config.seed, log=ctx.log
        )
        ctx.clock.lap("robustness")
        if plan.prnu is not None:  # after the matrix, on rank 0 alone: its numbers unchanged
            result["prnu"] = prnu_check(
                plan,
                ctx.detectors,
                ctx.split.manifest,
                ctx.run_dir,
                trained["generators"],
                ctx.config.seed,
                ctx.progress,
                ctx.log,
            )
            ctx.clock.lap("robustness: prnu")
        return result

    def metrics(self, result: dict[str, Any]) -> dict[str, Any]:
        return result

    def report(self, report: Report, result: dict[str, Any], ctx: Context) -> None:
        add_robustness_report(report, result)
