"""The pretrained zoo: detectors trained once on SimCam-Bench and shipped with camtrace, as
torchvision and timm ship pretrained weights.

``camtrace/zoo/registry.json`` is the one registry: per name, torchvision-style
:class:`Weights` metadata (architecture, classes, patch size and protocol, bench and data
digest, the config that trained it, its measured bench accuracy, training time and
processor, camtrace version) and the weights file's sha256. Files up to
:data:`MAX_SHIPPED_MB` ship in ``camtrace/zoo/``; larger ones (``shipped: false``) are
trained into the user's cache (:func:`cache_dir`) by the same config. Every load checks the
file's sha256 against the registry (a cache file against the sha256 recorded when it was
trained there), so a corrupted or swapped file is refused in one line.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from camtrace.errors import CamtraceError

MAX_SHIPPED_MB = 25  # larger weights would ride along in every clone forever
REGISTRY = "registry.json"
CACHE_ENV = "CAMTRACE_CACHE"


@dataclass(frozen=True)
class Weights:
    """One pretrained detector: what it is, what made it, how good it is on the bench."""

    name: str
    arch: str
    classes: tuple[str, ...]
    patch_size: int
    protocol: str  # patch protocol, e.g. "bondi" (64 px, 32 best patches per image)
    bench: str  # e.g. "simcam-bench-v1"
    data_digest: str  # the bench's split manifest digest the detector was trained on
    config: str  # the built-in config that trains it: camtrace run <config>
    accuracy: dict[str, float]  # on the bench's eval split: single patch, image (vote)
    training: dict[str, Any]  # seconds, processor, precision, epochs, best epoch
    defense: str  # "none", "gradnorm", "advtrain", "both"
    camtrace_version: str
    parameters: int
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


def zoo() -> dict[str, Weights]:
    """Every pretrained detector by name (shipped and cache-trained)."""
    raw = json.loads(registry_path().read_text())
    names = {f.name for f in fields(Weights)}
    return {
        name: Weights(**{k: v for k, v in {**entry, "name": name}.items() if k in names})
        for name, entry in raw["weights"].items()
    }


def pretrained(name: str) -> Weights:
    """The zoo's entry ``name``; an unknown name lists the known ones."""
    entries = zoo()
    if name not in entries:
        raise CamtraceError(
            f"{name}: no pretrained detector of that name; pretrained: {', '.join(entries)} "
            "(camtrace models), or give a checkpoint file"
        )
    return entries[name]


def resolve_checkpoint(path_or_name: str | Path) -> Path:
    """A checkpoint file: ``path_or_name`` itself when it is a file, else the verified
    weights of the pretrained detector of that name."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    name = str(path_or_name)
    if path.suffix == ".safetensors" or os.sep in name:
        raise CamtraceError(f"{path}: checkpoint not found; train one with 'camtrace train'")
    if name not in zoo():
        raise CamtraceError(
            f"{name}: no such checkpoint file and no pretrained detector of that name; "
            f"pretrained: {', '.join(zoo())}"
        )
    return pretrained(name).verified_path()
