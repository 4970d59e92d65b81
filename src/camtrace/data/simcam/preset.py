"""SimCam presets: camera models as data (YAML), validated on load.

A preset lists ``defaults`` (one complete camera model) and ``models`` (each only what
differs from the defaults). ``spread`` scales every continuous deviation of a model from
the defaults, so one number tunes how far apart the models are; discrete choices (CFA
pattern, demosaicing, JPEG quality, chroma subsampling, quantisation-table tweaks) are left
as given. A model's ``jpeg:`` section becomes the codec's one JPEG setting,
:class:`camtrace.data.codec.Jpeg`, with the model's own tables.
The field meanings are documented at the top of ``presets/default.yaml``. An optional
``draw: {models: N, seed: S, make: NAME}`` section replaces the models by N drawn at random
inside the ranges they span (``draw.py``; ``presets/many.yaml``: SpoC's embedder models).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from camtrace.data.codec import Jpeg, ijg_tables
from camtrace.data.simcam.draw import draw_models
from camtrace.errors import CamtraceError
from camtrace.schema import REQUIRED, Invalid, Section, load_yaml, option, parse, rule_of

PRESET_DIR = Path(__file__).parent / "presets"
CFA = Literal["RGGB", "BGGR", "GRBG", "GBRG"]
DEMOSAIC = Literal["bilinear", "malvar2004", "menon2007", "vng", "ea"]
NAME = r"[A-Za-z0-9][A-Za-z0-9.+-]*"  # no '_' (file names split on it), no spaces


def _in(lo: float, hi: float, doc: str) -> Any:
    """A required field whose numbers (or each element) must lie in [lo, hi]."""
    return option(REQUIRED, doc, minimum=lo, maximum=hi)


def _one_of(doc: str) -> Any:
    return option(REQUIRED, doc)


Entry = Annotated[int, Field(ge=0, le=63)]  # a quantisation-table entry, natural order
Delta = Annotated[int, Field(ge=-254, le=254)]


class Optics(Section):
    psf: Literal["gaussian", "disk"] = _one_of("point spread function: gaussian, or disk (defocus)")
    blur: float = _in(0.0, 5.0, "PSF size, px: Gaussian sigma or disk radius")
    vignetting: float = _in(0.0, 0.9, "light fall-off: illumination 1 - vignetting r^2")
    ca_red: float = _in(-0.02, 0.02, "lateral chromatic aberration: R magnification - 1")
    ca_blue: float = _in(-0.02, 0.02, "lateral chromatic aberration: B magnification - 1")
    olpf: float = _in(0.0, 2.0, "optical low-pass filter: 4-spot split distance, px (0: none)")
    distortion: float = _in(0.0, 0.2, "barrel distortion k1, corrected in camera (0: none)")


class Sensor(Section):
    sensitivity: tuple[float, float, float] = _in(0.05, 1.0, "[R, G, B] channel sensitivities")
    crosstalk: float = _in(0.0, 0.5, "colour-filter overlap (0: ideal)")
    full_well: float = _in(100.0, 1e6, "electrons at full scale at ISO 100")
    read_noise: float = _in(0.0, 100.0, "read noise, electrons at ISO 100")
    iso: tuple[float, float] = _in(25.0, 25600.0, "[base ISO, auto-ISO ceiling]")
    iso_stops: float = _in(0.05, 8.0, "mean stops above base ISO of a shot")
    prnu: float = _in(0.0, 0.1, "std of the per-device PRNU fingerprint")
    device_variation: float = _in(0.0, 0.5, "std of a device's noise-gain factor around 1")


class Exposure(Section):
    target: float = _in(0.01, 0.9, "metered mean linear luminance of the frame")
    jitter: float = _in(0.0, 2.0, "per-shot exposure error, std in natural-log units")


class Isp(Section):
    wb_jitter: float = _in(0.0, 0.5, "per-shot white-balance error, std in log units")
    saturation: float = _in(0.0, 3.0, "colour rendering (1: colorimetric)")
    contrast: float = _in(-1.0, 1.0, "S-curve strength on sRGB (negative flattens)")
    tone_gamma: float = _in(0.3, 3.0, "extra power 1 / tone_gamma after sRGB encoding")
    sharpen_amount: float = _in(0.0, 5.0, "unsharp-mask gain on luma (0: off)")
    sharpen_radius: float = _in(0.3, 5.0, "unsharp-mask Gaussian sigma, px")
    resampling: Literal["linear", "cubic", "lanczos"] = _one_of(
        "the distortion correction's interpolation kernel"
    )
    raw_denoise: float = _in(0.0, 10.0, "bilateral range sigma on the CFA planes (0: off)")
    luma_denoise: float = _in(0.0, 1.0, "bilateral range sigma on luma, [0, 1] units (0: off)")
    chroma_denoise: float = _in(0.0, 10.0, "Gaussian sigma on Cb / Cr, px (0: off)")


class JpegSection(Section):
    """A model's ``jpeg:`` section: libjpeg's IJG tables at ``quality`` with a few entries
    tweaked (real cameras ship their own tables, usually close to a scaled standard one).
    ``quality: [lo, hi]`` draws each shot's quality uniformly from that range instead (as
    when photos pass through software that re-encodes at varying settings)."""

    quality: int | tuple[int, int] = _in(1, 100, "IJG quality, or [lo, hi] drawn per shot")
    subsampling: Literal["4:4:4", "4:2:2", "4:2:0"] = _one_of("chroma subsampling")
    luma_tweaks: tuple[tuple[Entry, Delta], ...] = _one_of(
        "[[entry 0..63, delta], ...] added to the luma table (clipped to 1..255)"
    )
    chroma_tweaks: tuple[tuple[Entry, Delta], ...] = _one_of("the same for the chroma table")

    def jpeg(self, quality: int | None = None) -> Jpeg:
        """The codec setting at ``quality`` (default: the section's fixed quality): the IJG
        (luma, chroma) tables, tweaked entries clipped to 1..255."""
        if quality is None:
            if not isinstance(self.quality, int):
                raise CamtraceError("this JPEG section draws its quality per shot: use for_shot")
            quality = self.quality
        tables = []
        for base, tweaks in zip(ijg_tables(quality), (self.luma_tweaks, self.chroma_tweaks)):
            table = list(base)
            for index, delta in tweaks:
                table[index] = min(max(table[index] + delta, 1), 255)
            tables.append(tuple(table))
        return Jpeg(qtables=tuple(tables), subsampling=self.subsampling)

    def for_shot(self, rng: np.random.Generator) -> Jpeg:
        """This shot's setting: the fixed one, or a quality drawn from ``[lo, hi]``."""
        if isinstance(self.quality, int):
            return self.jpeg()
        return self.jpeg(int(rng.integers(min(self.quality), max(self.quality) + 1)))


class CameraModel(Section):
    """One camera model: everything its devices share."""

    DISCRETE: ClassVar[frozenset[str]] = frozenset({"jpeg"})  # ``spread`` leaves it as given

    make: str = option(REQUIRED, "EXIF Make: letters, digits, '.', '+', '-'", pattern=NAME)
    model: str = option(REQUIRED, "EXIF Model: letters, digits, '.', '+', '-'", pattern=NAME)
    cfa: CFA = _one_of("Bayer pattern, the top-left 2x2 tile read row by row")
    demosaic: DEMOSAIC = _one_of("demosaicing algorithm")
    optics: Optics = _one_of("the lens")
    sensor: Sensor = _one_of("the sensor")
    exposure: Exposure = _one_of("auto-exposure")
    isp: Isp = _one_of("the image processing")
    jpeg: JpegSection = _one_of("the JPEG setting")

    @property
    def label(self) -> str:
        """The manifest's model column, Dresden-style ``Make_Model``."""
        return f"{self.make}_{self.model}"


class DeadLeaves(Section):
    r_min: float = _in(0.5, 64.0, "smallest disk radius, px")
    r_max: float = _in(0.01, 1.0, "largest disk radius, fraction of the short side")
    coverage: float = _in(0.5, 10.0, "summed disk area / frame area")
    shading: float = _in(0.0, 1.0, "per-disk illumination ramp, +- this fraction")
    texture: float = _in(0.0, 1.0, "largest amplitude of the per-disk 1/f texture")
    supersample: int = _in(1, 4, "paint disks this many times larger and box-average")


class SceneSpec(Section):
    photo_share: float = _in(0.0, 1.0, "share of shots showing photos")
    natural_share: float = _in(0.0, 1.0, "share of shots showing natural procedural views")
    skimage: bool = _one_of("use the scikit-image colour photos available offline")
    margin: int = _in(0, 64, "scene margin, px (random framing offset)")
    dead_leaves: DeadLeaves = _one_of("the dead-leaves scenes")

    def check(self) -> None:
        if self.photo_share + self.natural_share > 1:
            raise Invalid("natural_share", "photo_share + natural_share must be at most 1")


class Draw(Section):
    """``draw:``: models drawn at random inside the given models' ranges (draw.py)."""

    models: int = _in(1, 10000, "how many models to draw")
    seed: int = _in(0, 2**32 - 1, "seed of the draw")
    make: str = option(REQUIRED, "EXIF Make of the drawn models", pattern=NAME)


class PresetFile(Section):
    """A preset file, ``extends`` and ``all_models`` resolved (presets/default.yaml)."""

    instances: int = _in(1, 100, "devices per model")
    spread: float = _in(0.0, 5.0, "scales every continuous difference from the defaults")
    scenes: SceneSpec = _one_of("the scenes the devices shoot")
    defaults: dict[str, Any] = _one_of("one complete camera model")
    models: tuple[dict[str, Any], ...] = _one_of("camera models: make, model and what differs")
    draw: Draw | None = option(None, "draw this many models in the given ones' ranges instead")


PRESET_SECTIONS: dict[str, type[Section]] = {
    "preset file": PresetFile,
    "scenes": SceneSpec,
    "scenes.dead_leaves": DeadLeaves,
    "defaults / models[i] (a camera model)": CameraModel,
    "optics": Optics,
    "sensor": Sensor,
    "exposure": Exposure,
    "isp": Isp,
    "jpeg": JpegSection,
    "draw": Draw,
}
"""The sections of a preset file, for its reference (docs/config.md) and JSON Schema."""


@dataclass(frozen=True)
class Preset:
    """A validated preset; ``sha256`` is the file's content hash (the simulate cache key)."""

    name: str
    path: Path
    sha256: str
    instances: int
    spread: float
    scenes: SceneSpec
    models: tuple[CameraModel, ...]


class _Bad(Exception):
    """A validation failure at a dotted field path (turned into a CamtraceError)."""

    def __init__(self, where: str, what: str = "") -> None:
        super().__init__(f"{where}: {what}" if what else where)


def available_presets() -> list[str]:
    """Names of the presets shipped with camtrace (files in ``presets/``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(preset: str | Path) -> Path:
    """A shipped preset's file for a bare name, else ``preset`` as a path."""
    if isinstance(preset, str) and preset in available_presets():
        return PRESET_DIR / f"{preset}.yaml"
    path = Path(preset)
    if not path.is_file():
        raise CamtraceError(
            f"preset '{preset}': no such preset or file; use one of "
            f"{', '.join(available_presets())} or a path to a YAML file"
        )
    return path


def load_preset(preset: str | Path) -> Preset:
    """Read and validate a preset (a shipped name or a YAML path); errors name the field."""
    path = preset_path(preset)
    try:
        data, digest = _read(path, ())
        return _parse(data, path, digest.hexdigest())
    except _Bad as e:
        raise CamtraceError(f"{path}: {e}; fix the preset") from None


TABLE_PRESETS = ("default", "unseen")
"""The presets whose camera models' JPEG tables :func:`camera_tables` knows by default: the
bench's and the unseen models (``tiny`` reuses default's names with other tables, ``hard``
draws a quality per shot, ``many`` holds SpoC's embedder models)."""


@functools.lru_cache(maxsize=8)
def _tables_of(presets: tuple[str, ...]) -> tuple[tuple[str, Jpeg], ...]:
    found: dict[str, Jpeg] = {}
    for name in presets:
        for camera in load_preset(name).models:
            if isinstance(camera.jpeg.quality, int):
                found.setdefault(camera.label, camera.jpeg.jpeg())
    return tuple(found.items())


def camera_tables(presets: tuple[str, ...] = TABLE_PRESETS) -> dict[str, Jpeg]:
    """Each SimCam camera model's own JPEG setting (its quantisation tables and chroma
    subsampling) by its label ``Make_Model``, from ``presets`` (the first that has the
    label wins). Models whose quality is drawn per shot have no one setting: left out."""
    return dict(_tables_of(tuple(presets)))


def _read(path: Path, chain: tuple[Path, ...]) -> tuple[Any, Any]:
    """The preset's mapping with ``extends`` resolved, and a hash of every file it read.

    ``extends: <preset>`` starts from that preset's top-level sections (this file's replace
    them); ``all_models: {...}`` is then merged onto every model, for what all must share.
    """
    raw = path.read_bytes()
    data = load_yaml(raw, str(path))
    digest = hashlib.sha256(raw)
    if not isinstance(data, dict) or "extends" not in data:
        return data, digest
    if path.resolve() in chain:
        raise _Bad("extends", f"{path} extends itself")
    base, base_digest = _read(preset_path(str(data["extends"])), (*chain, path.resolve()))
    digest.update(base_digest.digest())
    shared = data.get("all_models", {})
    data = {**base, **{k: v for k, v in data.items() if k not in ("extends", "all_models")}}
    if not isinstance(shared, dict) or not isinstance(data.get("models"), list):
        raise _Bad("all_models", "must be a mapping merged onto every model")
    data["models"] = [_merge(m, shared) if isinstance(m, dict) else m for m in data["models"]]
    return data, digest


def _parse(data: Any, path: Path, sha256: str) -> Preset:
    spec = _build(PresetFile, data, "")
    if not spec.models:
        raise _Bad("models", "must be a non-empty list of camera models")
    base = _build(
        CameraModel, {"make": "defaults", "model": "defaults", **spec.defaults}, "defaults"
    )
    cameras = tuple(
        _camera(m, spec.defaults, base, spec.spread, f"models[{i}]")
        for i, m in enumerate(spec.models)
    )
    if spec.draw is not None:
        cameras = _drawn(spec.draw, cameras)
    _check_unique(cameras)
    return Preset(path.stem, path, sha256, spec.instances, spec.spread, spec.scenes, cameras)


def _drawn(draw: Draw, cameras: tuple[CameraModel, ...]) -> tuple[CameraModel, ...]:
    """The ``draw:`` section's models, drawn from the ranges of ``cameras`` (never one of
    their names)."""
    drawn = draw_models(cameras, draw.models, draw.seed, draw.make)
    taken = {c.label for c in cameras} & {c.label for c in drawn}
    if taken:
        raise _Bad("draw.make", f"drawn names {sorted(taken)[0]} repeat a given model; change make")
    return drawn


def _camera(
    entry: dict[str, Any], defaults: dict, base: CameraModel, spread: float, where: str
) -> CameraModel:
    """Validate ``entry`` over ``defaults``, then move it toward ``base`` by ``spread``."""
    return _spread(_build(CameraModel, _merge(defaults, entry), where), base, spread)


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, recursing into nested mappings."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def _spread(
    value: Any, default: Any, spread: float, bounds: tuple = (-float("inf"), float("inf"))
) -> Any:
    """Move every continuous field ``spread`` times as far from ``default`` (ints rounded).

    Positive quantities move geometrically, ``default * (value / default) ** spread`` (ISO,
    full well, blur stay positive and ratios scale), signed ones linearly,
    ``default + spread * (value - default)``; the result is clipped to the field's valid
    range. Strings (CFA, demosaicing, names) and the JPEG setting (quality, subsampling,
    quantisation-table tweaks) are discrete and kept as given.
    """
    if isinstance(value, Section):
        fields = type(value).model_fields
        discrete = getattr(value, "DISCRETE", frozenset())
        return value.model_copy(
            update={
                name: _spread(
                    getattr(value, name),
                    getattr(default, name),
                    spread,
                    _bounds(type(value), name, bounds),
                )
                for name in fields
                if name not in discrete
            }
        )
    if isinstance(value, bool) or not isinstance(value, (int, float, tuple)):
        return value
    if isinstance(value, tuple):
        if not all(isinstance(x, float) for x in value):
            return value
        return tuple(_spread(v, d, spread, bounds) for v, d in zip(value, default))
    if value > 0 and default > 0:
        moved = default * (value / default) ** spread
    else:
        moved = default + spread * (value - default)
    moved = min(max(moved, bounds[0]), bounds[1])
    return round(moved) if isinstance(value, int) else float(moved)


def _bounds(cls: type[Section], name: str, outer: tuple[float, float]) -> tuple[float, float]:
    rule = rule_of(cls, name)
    if rule.minimum is None:
        return outer
    return (rule.minimum, rule.maximum)


def _build(cls: type[Section], data: Any, where: str) -> Any:
    """Section ``cls`` from a mapping: names, types and ranges checked."""
    try:
        return parse(cls, data, where)
    except CamtraceError as e:
        raise _Bad(*str(e).split(": ", 1)) from None


def _check_unique(cameras: tuple[CameraModel, ...]) -> None:
    seen: set[str] = set()
    for i, c in enumerate(cameras):
        if c.label in seen:
            raise _Bad(f"models[{i}]", f"duplicate camera model {c.make} {c.model}")
        seen.add(c.label)
