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

import dataclasses
import hashlib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from camtrace.data.codec import Jpeg, ijg_tables
from camtrace.data.simcam.draw import draw_models
from camtrace.errors import CamtraceError

PRESET_DIR = Path(__file__).parent / "presets"
CFA = Literal["RGGB", "BGGR", "GRBG", "GBRG"]
DEMOSAIC = Literal["bilinear", "malvar2004", "menon2007", "vng", "ea"]
TWEAKS = {"range": (-254, 254), "tweak": True}  # quantisation-table [entry, delta] pairs
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*")  # no '_' (file names split on it), no spaces


def _in(lo: float, hi: float) -> Any:
    """A required field whose numbers (or each element) must lie in [lo, hi]."""
    return field(metadata={"range": (lo, hi)})


@dataclass(frozen=True)
class Optics:
    psf: Literal["gaussian", "disk"]
    blur: float = _in(0.0, 5.0)
    vignetting: float = _in(0.0, 0.9)
    ca_red: float = _in(-0.02, 0.02)
    ca_blue: float = _in(-0.02, 0.02)
    olpf: float = _in(0.0, 2.0)
    distortion: float = _in(0.0, 0.2)


@dataclass(frozen=True)
class Sensor:
    sensitivity: tuple[float, float, float] = _in(0.05, 1.0)
    crosstalk: float = _in(0.0, 0.5)
    full_well: float = _in(100.0, 1e6)
    read_noise: float = _in(0.0, 100.0)
    iso: tuple[float, float] = _in(25.0, 25600.0)
    iso_stops: float = _in(0.05, 8.0)
    prnu: float = _in(0.0, 0.1)
    device_variation: float = _in(0.0, 0.5)


@dataclass(frozen=True)
class Exposure:
    target: float = _in(0.01, 0.9)
    jitter: float = _in(0.0, 2.0)


@dataclass(frozen=True)
class Isp:
    wb_jitter: float = _in(0.0, 0.5)
    saturation: float = _in(0.0, 3.0)
    contrast: float = _in(-1.0, 1.0)
    tone_gamma: float = _in(0.3, 3.0)
    sharpen_amount: float = _in(0.0, 5.0)
    sharpen_radius: float = _in(0.3, 5.0)
    resampling: Literal["linear", "cubic", "lanczos"]
    raw_denoise: float = _in(0.0, 10.0)
    luma_denoise: float = _in(0.0, 1.0)
    chroma_denoise: float = _in(0.0, 10.0)


@dataclass(frozen=True)
class JpegSection:
    """A model's ``jpeg:`` section: libjpeg's IJG tables at ``quality`` with a few entries
    tweaked (real cameras ship their own tables, usually close to a scaled standard one).
    ``quality: [lo, hi]`` draws each shot's quality uniformly from that range instead (as
    when photos pass through software that re-encodes at varying settings)."""

    quality: int | tuple[int, int] = _in(1, 100)
    subsampling: Literal["4:4:4", "4:2:2", "4:2:0"]
    luma_tweaks: tuple[tuple[int, int], ...] = field(metadata=TWEAKS)  # [entry, delta] pairs
    chroma_tweaks: tuple[tuple[int, int], ...] = field(metadata=TWEAKS)

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


@dataclass(frozen=True)
class CameraModel:
    """One camera model: everything its devices share."""

    make: str
    model: str
    cfa: CFA
    demosaic: DEMOSAIC
    optics: Optics
    sensor: Sensor
    exposure: Exposure
    isp: Isp
    jpeg: JpegSection = field(metadata={"discrete": True})  # ``spread`` leaves it as given

    @property
    def label(self) -> str:
        """The manifest's model column, Dresden-style ``Make_Model``."""
        return f"{self.make}_{self.model}"


@dataclass(frozen=True)
class DeadLeaves:
    r_min: float = _in(0.5, 64.0)
    r_max: float = _in(0.01, 1.0)
    coverage: float = _in(0.5, 10.0)
    shading: float = _in(0.0, 1.0)
    texture: float = _in(0.0, 1.0)
    supersample: int = _in(1, 4)


@dataclass(frozen=True)
class SceneSpec:
    photo_share: float = _in(0.0, 1.0)
    natural_share: float = _in(0.0, 1.0)
    skimage: bool
    margin: int = _in(0, 64)
    dead_leaves: DeadLeaves


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

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")


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


def _read(path: Path, chain: tuple[Path, ...]) -> tuple[Any, Any]:
    """The preset's mapping with ``extends`` resolved, and a hash of every file it read.

    ``extends: <preset>`` starts from that preset's top-level sections (this file's replace
    them); ``all_models: {...}`` is then merged onto every model, for what all must share.
    """
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise CamtraceError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
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
    draw = data.pop("draw", None) if isinstance(data, dict) else None
    _check_keys(data, ("instances", "spread", "scenes", "defaults", "models"), "preset")
    instances = _value(int, data["instances"], "instances", {"range": (1, 100)})
    spread = _value(float, data["spread"], "spread", {"range": (0.0, 5.0)})
    scenes = _build(SceneSpec, data["scenes"], "scenes")
    if scenes.photo_share + scenes.natural_share > 1:
        raise _Bad("scenes.natural_share", "photo_share + natural_share must be at most 1")
    defaults, models = data["defaults"], data["models"]
    if not isinstance(defaults, dict):
        raise _Bad("defaults", "must be a mapping (a complete camera model)")
    base = _build(CameraModel, {"make": "defaults", "model": "defaults", **defaults}, "defaults")
    if not isinstance(models, list) or not models:
        raise _Bad("models", "must be a non-empty list of camera models")
    cameras = tuple(
        _camera(m, defaults, base, spread, f"models[{i}]") for i, m in enumerate(models)
    )
    if draw is not None:
        cameras = _drawn(draw, cameras)
    _check_unique(cameras)
    return Preset(path.stem, path, sha256, instances, spread, scenes, cameras)


def _drawn(draw: Any, cameras: tuple[CameraModel, ...]) -> tuple[CameraModel, ...]:
    """The ``draw:`` section's models, drawn from the ranges of ``cameras`` (never one of
    their names)."""
    _check_keys(draw, ("models", "seed", "make"), "draw")
    count = _value(int, draw["models"], "draw.models", {"range": (1, 10000)})
    seed = _value(int, draw["seed"], "draw.seed", {"range": (0, 2**32 - 1)})
    make = _value(str, draw["make"], "draw.make", {})
    drawn = draw_models(cameras, count, seed, make)
    taken = {c.label for c in cameras} & {c.label for c in drawn}
    if taken:
        raise _Bad("draw.make", f"drawn names {sorted(taken)[0]} repeat a given model; change make")
    return drawn


def _camera(
    entry: Any, defaults: dict, base: CameraModel, spread: float, where: str
) -> CameraModel:
    """Validate ``entry`` over ``defaults``, then move it toward ``base`` by ``spread``."""
    if not isinstance(entry, dict):
        raise _Bad(where, "must be a mapping with at least make and model")
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
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(
            value,
            **{
                f.name: _spread(
                    getattr(value, f.name),
                    getattr(default, f.name),
                    spread,
                    f.metadata.get("range", bounds),
                )
                for f in dataclasses.fields(value)
                if not f.metadata.get("discrete")
            },
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


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_keys(data: Any, names: tuple[str, ...], where: str) -> None:
    if not isinstance(data, dict):
        raise _Bad(where, f"must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(names))
    if unknown:
        raise _Bad(f"{where}.{unknown[0]}", f"unknown field (expected {', '.join(names)})")
    missing = [n for n in names if n not in data]
    if missing:
        raise _Bad(f"{where}.{missing[0]}", "missing")


def _build(cls: type, data: Any, where: str) -> Any:
    """Construct dataclass ``cls`` from a mapping, checking names, types and ranges."""
    fields = dataclasses.fields(cls)
    _check_keys(data, tuple(f.name for f in fields), where)
    hints = typing.get_type_hints(cls)
    kwargs = {
        f.name: _value(hints[f.name], data[f.name], f"{where}.{f.name}", f.metadata) for f in fields
    }
    return cls(**kwargs)


def _value(hint: Any, v: Any, where: str, meta: Any) -> Any:
    """One field value checked against its type hint and ``range`` metadata."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # a number or a [lo, hi] range
        number, pair = args
        return _value(pair if isinstance(v, list) else number, v, where, meta)
    if dataclasses.is_dataclass(hint):
        return _build(hint, v, where)
    if origin is Literal:
        if v not in args:
            raise _Bad(where, f"must be one of {', '.join(map(str, args))} (got {v!r})")
        return v
    if origin is tuple:
        return _tuple(args, v, where, meta)
    if hint is bool:
        if not isinstance(v, bool):
            raise _Bad(where, f"must be true or false (got {v!r})")
        return v
    if hint is str:
        if not isinstance(v, str) or not NAME.fullmatch(v):
            raise _Bad(where, f"must be a name of letters, digits, '.', '+', '-' (got {v!r})")
        return v
    return _number(hint, v, where, meta)


def _tuple(args: tuple, v: Any, where: str, meta: Any) -> tuple:
    if not isinstance(v, list):
        raise _Bad(where, f"must be a list (got {v!r})")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_value(args[0], x, f"{where}[{i}]", meta) for i, x in enumerate(v))
    if len(v) != len(args):
        raise _Bad(where, f"must be a list of {len(args)} values (got {v!r})")
    if meta.get("tweak"):  # a quantisation-table tweak: [entry 0..63 in natural order, delta]
        return (
            _number(int, v[0], f"{where}[0]", {"range": (0, 63)}),
            _number(int, v[1], f"{where}[1]", meta),
        )
    return tuple(_value(a, x, f"{where}[{i}]", meta) for i, (a, x) in enumerate(zip(args, v)))


def _number(hint: Any, v: Any, where: str, meta: Any) -> int | float:
    ok = isinstance(v, int) if hint is int else _is_number(v)
    if not ok or isinstance(v, bool):
        raise _Bad(where, f"must be {'an integer' if hint is int else 'a number'} (got {v!r})")
    lo, hi = meta.get("range", (-float("inf"), float("inf")))
    if not lo <= v <= hi:
        raise _Bad(where, f"must lie in [{lo}, {hi}] (got {v!r})")
    return hint(v)


def _check_unique(cameras: tuple[CameraModel, ...]) -> None:
    seen: set[str] = set()
    for i, c in enumerate(cameras):
        if c.label in seen:
            raise _Bad(f"models[{i}]", f"duplicate camera model {c.make} {c.model}")
        seen.add(c.label)
