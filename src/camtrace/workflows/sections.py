"""The sections of an experiment as plug-ins: one :class:`Section` per config key, registered
here, and :func:`run_experiment <camtrace.workflows.experiment.run_experiment>` loops over
those its config names.

A section is checked against the detectors before any data is made (what its config alone
can get wrong fails at once), planned once the camera models are known (before any
training), runs either on the data (``stage = "data"``, before the
detectors are trained: the audit) or on the trained detectors of the first split
(``"detectors"``: attacks, generators, SpoC, spoof, robustness), writes its part of
``metrics.json`` under its key and adds its part of the report. A new paper's experiment is
one module with a :class:`Section` and a config :class:`~camtrace.schema.Section`, and one
:func:`register_section` call; its config key is added to the experiment's schema.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from camtrace.data.manifest import Manifest
from camtrace.models.registry import model_spec
from camtrace.schema import Section as ConfigSection
from camtrace.workflows.attack_plan import plan_attacks
from camtrace.workflows.attack_report import add_attack_report
from camtrace.workflows.attack_run import run_attacks
from camtrace.workflows.audit import add_audit_section, audit, audit_summary
from camtrace.workflows.config import ExperimentConfig, extend_config, retract_config
from camtrace.workflows.generator_report import add_generator_report
from camtrace.workflows.generator_run import generator_paths, plan_generators_of, run_generators
from camtrace.workflows.identification import Clock, DetectorSpec, SplitRun
from camtrace.workflows.report import Report
from camtrace.workflows.robustness import check_robustness, run_robustness, share_from_rank_zero
from camtrace.workflows.robustness_report import add_robustness_report
from camtrace.workflows.spoc_plan import plan_spoc
from camtrace.workflows.spoc_report import add_spoc_report
from camtrace.workflows.spoc_run import run_spoc
from camtrace.workflows.spoof_section import add_spoof_report, run_spoof

AUDIT_REPORT = "audit/report.html"  # with ``audit: true``, relative to the run folder


@dataclass
class Context:
    """What a section works with: the resolved config, the detectors, where the run goes,
    and, as the run proceeds, the data, the first split's trained detectors and the results
    of the sections run before it (by key)."""

    config: ExperimentConfig
    specs: list[DetectorSpec]
    run_dir: Path
    clock: Clock
    progress: bool
    log: Callable[[str], None]
    manifest: Manifest | None = None
    split: SplitRun | None = None
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def sizes(self) -> dict[str, int]:
        """Each detector's patch size, by its name in the run, in config order."""
        return {s.name: s.protocol.size for s in self.specs}

    @property
    def detectors(self) -> dict[str, dict[str, Any]]:
        """The first split's trained detectors (checkpoint, patch store, identification)."""
        assert self.split is not None, "a detectors-stage section runs after training"
        return self.split.detectors


class Section(Protocol):
    """One experiment section: ``key`` names its config key and its part of metrics.json."""

    key: ClassVar[str]
    stage: ClassVar[Literal["data", "detectors"]]

    def check(self, section: Any, ctx: Context) -> None:
        """Fail on what the config gets wrong against the detectors, before any data."""

    def plan(self, section: Any, ctx: Context) -> Any:
        """The section resolved against the detectors and camera models, before training."""

    def run(self, plan: Any, ctx: Context) -> Any:
        """Do the section's work; the result goes to ``metrics`` and ``report``."""

    def metrics(self, result: Any) -> dict[str, Any]:
        """Its part of metrics.json."""

    def report(self, report: Report, result: Any, ctx: Context) -> None:
        """Its part of report.html."""


SECTIONS: dict[str, Section] = {}
"""The registered sections, in the order they run (within their stage)."""


def register_section(section: Section, config: type[ConfigSection] | None = None) -> Section:
    """Register ``section``; with ``config``, its key is added to the experiment config's
    schema (a built-in section's key is declared in :class:`ExperimentConfig` itself)."""
    if config is not None:
        extend_config(section.key, config, (section.__doc__ or section.key).split("\n")[0])
    SECTIONS[section.key] = section
    return section


def unregister_section(key: str) -> None:
    """Remove a section registered with its own config key (tests)."""
    SECTIONS.pop(key)
    retract_config(key)


# -- the built-in sections --------------------------------------------------------------------


class AuditSection:
    """The data checked for shortcuts first (camtrace audit) into runs/<name>/audit/."""

    key, stage = "audit", "data"

    def check(self, section: bool, ctx: Context) -> None:
        return None

    def plan(self, section: bool, ctx: Context) -> None:
        return None

    def run(self, plan: None, ctx: Context) -> dict[str, Any]:
        result = audit(ctx.manifest, ctx.run_dir / "audit", progress=ctx.progress)
        ctx.clock.lap("audit")
        return result

    def metrics(self, result: dict[str, Any]) -> dict[str, Any]:
        return audit_summary(result, AUDIT_REPORT)

    def report(self, report: Report, result: dict[str, Any], ctx: Context) -> None:
        add_audit_section(report, result, AUDIT_REPORT)


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


class SpoofSection:
    """Whole eval photos spoofed, read back from disk, before and after."""

    key, stage = "spoof", "detectors"

    def check(self, section: Any, ctx: Context) -> None:
        return None

    def plan(self, section: Any, ctx: Context) -> Any:
        return section

    def run(self, plan: Any, ctx: Context) -> dict[str, Any]:
        result = run_spoof(
            plan, ctx.detectors, ctx.split.manifest, ctx.run_dir, ctx.progress, ctx.log
        )
        ctx.clock.lap("spoof")
        return result

    def metrics(self, result: dict[str, Any]) -> dict[str, Any]:
        return result

    def report(self, report: Report, result: dict[str, Any], ctx: Context) -> None:
        add_spoof_report(report, result)


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
        return result

    def metrics(self, result: dict[str, Any]) -> dict[str, Any]:
        return result

    def report(self, report: Report, result: dict[str, Any], ctx: Context) -> None:
        add_robustness_report(report, result)


for _section in (
    AuditSection(),
    AttacksSection(),
    GeneratorsSection(),
    SpocSection(),
    SpoofSection(),
    RobustnessSection(),
):
    register_section(_section)
