"""The pretrained zoo: detectors (and the generators of the generative attacks) trained once
on SimCam-Bench and shipped with camtrace, as torchvision and timm ship pretrained weights.

``camtrace/zoo/registry.json`` is the one registry: per detector name, torchvision-style
:class:`Weights` metadata (architecture, classes, patch size and protocol, bench and data
digest, the config that trained it, its measured bench accuracy, training time and
processor, camtrace version) and the weights file's sha256; per generator name,
:class:`GeneratorWeights` (method, target, the detectors it was trained against, its
validation SAR, PSNR and SSIM); per spoof detector name, :class:`SpoofDetectorWeights` (the
attacks it was trained on, its detection and false-positive rates). Files up to
:data:`MAX_SHIPPED_MB` ship in ``camtrace/zoo/``; larger ones (``shipped: false``) are
trained into the user's cache (:func:`cache_dir`) by the same config. Every load checks the
file's sha256 against the registry (a cache file against the sha256 recorded when it was
trained there), so a corrupted or swapped file is refused in one line.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from camtrace.errors import CamtraceError

MAX_SHIPPED_MB = 25  # larger weights would ride along in every clone forever
REGISTRY = "registry.json"
CACHE_ENV = "CAMTRACE_CACHE"


@dataclass(frozen=True)
class Pretrained:
    """What every registry entry has: a name and a weights file with its sha256."""

    name: str
    file: str
    bytes: int
    sha256: str
    shipped: bool

    @property
    def path(self) -> Path:
        """Where the weights are: in the package when shipped, else in the user's cache."""
        if self.shipped:
            return Path(str(resources.files("camtrace") / "zoo" / self.file))
        return cache_dir() / self.file

    def verified_path(self) -> Path:
        """:attr:`path`, after checking the file exists and its sha256 is the registry's."""
        path = self.path
        if not path.is_file():
            if self.shipped:
                raise CamtraceError(
                    f"{self.name}: shipped weights missing at {path}; reinstall camtrace"
                )
            raise CamtraceError(
                f"{self.name}: not in the cache ({path}); train it there with "
                f"'camtrace pretrain {self.name}'"
            )
        expected = self.sha256 if self.shipped else _cache_sha256(path)
        if sha256_of(path) != expected:
            raise CamtraceError(
                f"{path}: sha256 differs from the registry's for {self.name}; the file is "
                "corrupted or replaced: reinstall camtrace"
                + ("" if self.shipped else f" or retrain with 'camtrace pretrain {self.name}'")
            )
        return path


@dataclass(frozen=True)
class Weights(Pretrained):
    """One pretrained detector: what it is, what made it, how good it is on the bench."""

    arch: str = ""
    classes: tuple[str, ...] = ()
    patch_size: int = 0
    protocol: str = ""  # patch protocol, e.g. "bondi" (64 px, 32 best patches per image)
    bench: str = ""  # e.g. "simcam-bench-v1"
    data_digest: str = ""  # the bench's split manifest digest the detector was trained on
    config: str = ""  # the built-in config that trains it: camtrace run <config>
    accuracy: dict[str, float] = field(default_factory=dict)  # eval split: patch, image
    training: dict[str, Any] = field(default_factory=dict)  # seconds, processor, precision
    defense: str = "none"  # "none", "gradnorm", "advtrain", "both"
    camtrace_version: str = ""
    parameters: int = 0


@dataclass(frozen=True)
class GeneratorWeights(Pretrained):
    """One trained generator of a generative attack (``mislgan-<target>``...)."""

    method: str = ""
    target: str = ""
    against: tuple[str, ...] = ()  # the pretrained detectors it was trained against
    classes: tuple[str, ...] = ()
    patch_size: int = 0
    bench: str = ""
    config: str = ""
    validation: dict[str, Any] = field(default_factory=dict)  # SAR, PSNR, SSIM, iteration
    training: dict[str, Any] = field(default_factory=dict)  # seconds, iterations, processor
    camtrace_version: str = ""
    storage: str = "float32"  # float16 when float32 would be over MAX_SHIPPED_MB


@dataclass(frozen=True)
class SpoofDetectorWeights(Pretrained):
    """One trained spoof detector (``camtrace detect-spoof --spoof-detector NAME``): what its
    positives were crafted with, and its rates measured on the bench's eval patches."""

    arch: str = ""
    classes: tuple[str, ...] = ()
    patch_size: int = 0
    bench: str = ""
    config: str = ""
    trained_on: tuple[str, ...] = ()  # the attack settings of its training positives
    against: tuple[str, ...] = ()  # the pretrained detectors they were crafted against
    false_positives: dict[str, float] = field(default_factory=dict)  # clean, JPEG qN
    detection: dict[str, float] = field(default_factory=dict)  # by attack setting
    training: dict[str, Any] = field(default_factory=dict)  # seconds, epochs, processor
    camtrace_version: str = ""
    parameters: int = 0


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """Where weights too large to ship are trained to: ``$CAMTRACE_CACHE`` or
    ``~/.cache/camtrace/zoo``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) if root else Path.home() / ".cache" / "camtrace" / "zoo"


def _cache_sha256(path: Path) -> str:
    """The sha256 recorded beside a cache file when it was trained there."""
    sidecar = path.with_suffix(".sha256")
    if not sidecar.is_file():
        raise CamtraceError(f"{path}: no {sidecar.name} beside it; retrain it into the cache")
    return sidecar.read_text().split()[0]


def registry_path() -> Path:
    return Path(str(resources.files("camtrace") / "zoo" / REGISTRY))


def _entries(section: str, cls: type[Pretrained]) -> dict[str, Any]:
    raw = json.loads(registry_path().read_text()).get(section, {})
    names = {f.name for f in fields(cls)}
    return {
        name: cls(**{k: v for k, v in {**entry, "name": name}.items() if k in names})
        for name, entry in raw.items()
    }


def zoo() -> dict[str, Weights]:
    """Every pretrained detector by name (shipped and cache-trained)."""
    return _entries("weights", Weights)


def generator_zoo() -> dict[str, GeneratorWeights]:
    """Every trained generator by name (``<method>-<target>``)."""
    return _entries("generators", GeneratorWeights)


def spoof_detector_zoo() -> dict[str, SpoofDetectorWeights]:
    """Every trained spoof detector by name."""
    return _entries("spoof_detectors", SpoofDetectorWeights)


def pretrained(name: str) -> Weights:
    """The zoo's entry ``name``; an unknown name lists the known ones."""
    entries = zoo()
    if name not in entries:
        raise CamtraceError(
            f"{name}: no pretrained detector of that name yet; pretrained: "
            f"{', '.join(entries)} (camtrace models); 'camtrace pretrain {name}' trains one "
            "where a pretrain-NAME config exists"
        )
    return entries[name]


def resolve_checkpoint(path_or_name: str | Path, generators: bool = False) -> Path:
    """A checkpoint file: ``path_or_name`` itself when it is a file, else the verified
    weights of the pretrained detector (``generators``: generator) of that name."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    name = str(path_or_name)
    if path.suffix == ".safetensors" or os.sep in name:
        raise CamtraceError(f"{path}: checkpoint not found; train one with 'camtrace train'")
    entries: dict[str, Pretrained] = (
        {**generator_zoo()} if generators else {**zoo(), **spoof_detector_zoo()}
    )
    if name not in entries:
        kind = "trained generator" if generators else "pretrained detector"
        raise CamtraceError(
            f"{name}: no such checkpoint file and no {kind} of that name; known: "
            f"{', '.join(entries) or 'none yet'}"
        )
    return entries[name].verified_path()
