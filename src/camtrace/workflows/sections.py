"""The sections of an experiment as plug-ins: one :class:`Section` per config key, and
:func:`run_experiment <camtrace.workflows.experiment.run_experiment>` loops over those its
config names.

A section is checked against the detectors before any data is made (what its config alone
can get wrong fails at once), planned once the camera models are known (before any
training), runs either on the data (``stage = "data"``, before the detectors are trained:
the audit) or on the trained detectors of the first split (``"detectors"``: attacks,
generators, SpoC, spoof, PRNU, robustness), writes its part of ``metrics.json`` under its
key and adds its part of the report. Each paper's section lives in its own folder
(``workflows/attacks/``, ``generators/``, ``spoc/``, ``robustness/``, ``spoof_photos/``,
``prnu/``) with a ``section.py``; the built-in ones are registered in ``experiment.py``. A
new one is one folder with a :class:`Section` and its config
:class:`~camtrace.schema.Section`, and one :func:`register_section` call, which adds its key
to the experiment's schema.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from camtrace.data.manifest import Manifest
from camtrace.schema import Section as ConfigSection
from camtrace.workflows.config import ExperimentConfig, extend_config, retract_config
from camtrace.workflows.identification import Clock, DetectorSpec, SplitRun
from camtrace.workflows.report import Report


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
