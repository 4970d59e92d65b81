"""The ``prnu:`` section of an experiment: PRNU device fingerprints enrolled and matched on the
run's data (Lukas 2006; Chen 2008; Goljan 2009), after the detectors, on the first split's
evaluation scenes; the fingerprints go to ``runs/<name>/prnu/fingerprints/``."""

from __future__ import annotations

from typing import Any

from camtrace.workflows.prnu.report import add_prnu_report
from camtrace.workflows.prnu.run import run_prnu
from camtrace.workflows.report import Report
from camtrace.workflows.sections import Context


class PrnuSection:
    """PRNU device identification: enrol every device, match every evaluation-scene photo."""

    key, stage = "prnu", "detectors"

    def check(self, section: Any, ctx: Context) -> None:
        return None

    def plan(self, section: Any, ctx: Context) -> Any:
        return section

    def run(self, plan: Any, ctx: Context) -> dict[str, Any]:
        result = run_prnu(plan, ctx.split.manifest, ctx.run_dir, ctx.progress, ctx.log)
        ctx.clock.lap("prnu")
        return result

    def metrics(self, result: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in result.items() if k != "probes"}  # in prnu/pce.csv

    def report(self, report: Report, result: dict[str, Any], ctx: Context) -> None:
        add_prnu_report(report, result)
