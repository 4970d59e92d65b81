"""The attack plan: the ``attacks`` section of a config, checked and resolved once.

:func:`plan_attacks` turns the typed section (:class:`camtrace.workflows.config.AttacksConfig`)
into :class:`AttackPlan`: every epsilon already in 0-255 pixel units with a note saying how it
was read (:class:`Epsilon`), every JPEG setting, the attack's own (``params: {jpeg: ...}``)
and the judging ones (``jpeg: [...]``), one :class:`JpegChoice` whose ``"camera"`` means the
target camera's own tables, and every run built once at each epsilon, so an unknown
parameter or a bad value fails before any training. The runner
(:mod:`camtrace.workflows.attacks.run`) only reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from camtrace.attacks import Attack, Jpeg, as_pixel_eps, make_attack
from camtrace.errors import CamtraceError
from camtrace.workflows.config import AttackRunConfig, AttacksConfig

PLAIN = "plain"
Cameras = Callable[[str], Jpeg]
"""A camera model's own JPEG settings, by model name."""


def _fail(path: str, message: str) -> NoReturn:
    raise CamtraceError(f"{path}: {message}")


@dataclass(frozen=True)
class Epsilon:
    """One epsilon of a run: as written in the config and in 0-255 pixel units."""

    value: float
    pixels: float
    note: str

    @classmethod
    def of(cls, value: float, units: str) -> Epsilon:
        return cls(value, *as_pixel_eps(value, units))


@dataclass(frozen=True)
class JpegChoice:
    """A JPEG re-compression: none (``plain``), one quality, or ``camera``: each camera
    model's own quantisation tables and chroma subsampling (SpoC Table 4, bottom)."""

    quality: int | None = None
    camera: bool = False

    @classmethod
    def of(cls, item: int | str | None) -> JpegChoice:
        return cls(camera=True) if item == "camera" else cls(quality=item)  # type: ignore[arg-type]

    @property
    def plain(self) -> bool:
        return self.quality is None and not self.camera

    @property
    def name(self) -> str:
        return PLAIN if self.plain else "camera" if self.camera else f"q{self.quality}"

    def settings(self, model: str | None, cameras: Cameras) -> Jpeg | None:
        """The JPEG settings for images of (or aimed at) camera ``model``."""
        if self.camera:
            return cameras(model)  # type: ignore[arg-type]
        return None if self.quality is None else Jpeg(quality=self.quality)


def stand_in_camera(model: str) -> Jpeg:
    """Quality 90 stands in for a camera's own tables while a plan is checked."""
    return Jpeg(quality=90)


@dataclass(frozen=True)
class RunSpec:
    """One attack of the section: a method swept over ``eps`` values and/or targets."""

    method: str
    eps: tuple[Epsilon, ...]
    targets: str | tuple[str, ...] | None
    params: dict[str, Any]
    jpeg: JpegChoice
    patches: int | None
    detectors: tuple[str, ...] | None

    @property
    def targeted(self) -> bool:
        return self.targets is not None

    def attacks(self, arch: str) -> bool:
        """Whether this run attacks detector ``arch``."""
        return self.detectors is None or arch in self.detectors

    def build(
        self, eps: Epsilon | None, target: str | None, cameras: Cameras, batch_size: int
    ) -> Attack:
        """The run's attack at ``eps``, its JPEG resolved for camera model ``target``."""
        kwargs = {k: v for k, v in self.params.items() if k != "jpeg"}
        if not self.jpeg.plain:
            kwargs["jpeg"] = self.jpeg.settings(target, cameras)
        if eps is not None:
            kwargs["eps"] = eps.pixels
        return make_attack(self.method, batch_size=batch_size, **kwargs)


@dataclass(frozen=True)
class AttackPlan:
    """The parsed ``attacks`` section."""

    runs: tuple[RunSpec, ...]
    transfers: tuple[RunSpec, ...]
    transfer_listed: bool  # the config gave a list of transfers (metrics.json keeps the shape)
    split: str
    patches: int
    select: str
    jpeg: tuple[JpegChoice, ...]
    batch_size: int
    examples: int

    def eps_notes(self) -> dict[str, str]:
        """How each epsilon of the plan was read, by ``"<method> <eps>"``."""
        return {
            f"{r.method} {e.value:g}": e.note for r in (*self.runs, *self.transfers) for e in r.eps
        }


def _jpeg_item(item: Any, path: str) -> JpegChoice:
    ok = (
        item is None
        or item == "camera"
        or (isinstance(item, int) and not isinstance(item, bool) and 1 <= item <= 100)
    )
    if not ok:
        _fail(path, f"{item!r}: use a quality 1-100 or camera")
    return JpegChoice.of(item)


def _run(
    raw: AttackRunConfig,
    sizes: Mapping[str, int],
    path: str,
    transfer: bool,
    gradient_free: Collection[str] = (),
) -> RunSpec:
    if raw.method == "llcm" and raw.targets is not None:
        _fail(
            f"{path}.targets", "llcm picks the least-likely class itself; drop targets or use fgsm"
        )
    jpeg = _jpeg_item(raw.params.get("jpeg"), f"{path}.params.jpeg")
    if jpeg.camera and (raw.targets is None or transfer):
        _fail(
            f"{path}.params.jpeg",
            "camera means the target camera's tables: it needs targets, one per setting (not "
            "in a transfer); use a quality there",
        )
    if raw.detectors is not None:
        unknown = sorted(set(raw.detectors) - set(sizes))
        if unknown:
            _fail(
                f"{path}.detectors",
                f"{unknown} are not trained here; trained: {', '.join(sizes)}",
            )
    try:
        eps = tuple(Epsilon.of(e, raw.units) for e in raw.eps)
    except CamtraceError as e:
        _fail(f"{path}.eps", str(e))
    spec = RunSpec(raw.method, eps, raw.targets, dict(raw.params), jpeg, raw.patches, raw.detectors)
    for e in spec.eps or (None,):
        try:  # unknown parameters or bad values fail before training
            attack = spec.build(e, None, stand_in_camera, 1)
        except CamtraceError as err:
            _fail(path, str(err))
    return _without_gradient_free(spec, attack.needs_gradient, sizes, gradient_free, path)


def _without_gradient_free(
    spec: RunSpec,
    needs_gradient: bool,
    sizes: Mapping[str, int],
    gradient_free: Collection[str],
    path: str,
) -> RunSpec:
    """A gradient attack skips the hand-crafted detectors (Marra 2017) when no ``detectors``
    are listed, and refuses them when they are."""
    if not needs_gradient or not set(gradient_free) & set(sizes):
        return spec
    if spec.detectors is None:
        return replace(spec, detectors=tuple(d for d in sizes if d not in gradient_free))
    listed = sorted(set(spec.detectors) & set(gradient_free))
    if listed:
        _fail(
            f"{path}.detectors",
            f"{listed} have hand-crafted features without a gradient; {spec.method} needs one: "
            "drop them, or attack them with square",
        )
    return spec


def _check_transfer(spec: RunSpec, sizes: Mapping[str, int], path: str) -> None:
    if len(spec.eps) > 1:
        _fail(f"{path}.eps", "give one value in a transfer (sweeps belong in runs)")
    chosen = {a: s for a, s in sizes.items() if spec.attacks(a)}
    if len(chosen) < 2:
        _fail(path, "a transfer needs at least two detectors (add a `detectors:` list)")
    if len(set(chosen.values())) > 1:
        listed = ", ".join(f"{a}: {v}" for a, v in chosen.items())
        _fail(
            path,
            f"detectors see different patch sizes ({listed}); give them one patches protocol/size",
        )


def plan_attacks(
    section: AttacksConfig, sizes: Mapping[str, int], gradient_free: Collection[str] = ()
) -> AttackPlan:
    """Check ``section`` against the trained detectors (``sizes``: arch -> patch size;
    ``gradient_free``: those of them with hand-crafted features, which gradient attacks skip)
    and resolve every epsilon and JPEG setting once."""
    runs = tuple(
        _run(r, sizes, f"attacks.runs[{i}]", False, gradient_free)
        for i, r in enumerate(section.runs)
    )
    listed = isinstance(section.transfer, tuple)
    given = section.transfer if listed else (section.transfer,) if section.transfer else ()
    transfers = []
    for i, raw in enumerate(given):
        path = f"attacks.transfer[{i}]" if listed else "attacks.transfer"
        spec = _run(raw, sizes, path, True, gradient_free)
        _check_transfer(spec, sizes, path)
        transfers.append(spec)
    if not runs and not transfers:
        _fail("attacks", "give at least one entry in runs or a transfer")
    return AttackPlan(
        runs=runs,
        transfers=tuple(transfers),
        transfer_listed=listed,
        split=section.split,
        patches=section.patches,
        select=section.select,
        jpeg=tuple(JpegChoice.of(j) for j in section.jpeg),
        batch_size=section.batch_size,
        examples=section.examples,
    )
