"""The detectors and generators on offer: the pretrained zoo, and every camtrace checkpoint
found under a folder, each with its card's summary; a detector is loaded once and kept.
Spoof detectors (classes clean / attacked: ``camtrace run spoof-detection``) are kept apart
from the camera-model detectors, and PRNU fingerprints found there (``camtrace prnu
enroll``) are kept too, for the page's checks.

Each offer has a key (a zoo name, or ``dir:`` and the file's path inside the folder) that a
caller picks from the list: the catalogue never opens a path it did not find itself.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from camtrace.attacks.generative.checkpoint import check_classes, read_generator_card
from camtrace.errors import CamtraceError
from camtrace.models import Detector, load_detector, read_card
from camtrace.models.checkpoint import GENERATOR_KIND
from camtrace.models.fingerprint import KIND as FINGERPRINT_KIND
from camtrace.models.fingerprint import Fingerprint, load_fingerprint
from camtrace.models.zoo import generator_zoo, spoof_detector_zoo, zoo

try:
    from camtrace.models.spoofnet import SPOOF_CLASSES
except ImportError:  # a camtrace without the spoof detector: no card has its classes
    SPOOF_CLASSES = ("clean", "attacked")

DIR_PREFIX = "dir:"
Kind = Literal["detector", "spoof detector", "generator"]


@dataclass(frozen=True)
class Offer:
    """One checkpoint on offer: its ``key``, what ``load_detector`` / ``--generator`` takes
    (``source``: a zoo name or a file), its card and its kind."""

    key: str
    source: str
    card: dict[str, Any] = field(repr=False)
    kind: Kind = "detector"

    @property
    def classes(self) -> list[str]:
        return list(self.card.get("classes", []))

    def summary(self) -> dict[str, str]:
        """The card in a few lines: :func:`card_summary`."""
        return card_summary(self.card)


def card_summary(card: dict[str, Any]) -> dict[str, str]:
    """What an analyst reads of a checkpoint card: architecture (or generative method and
    target), classes, patches, training data, defence and, for the zoo, bench accuracy."""
    if card.get("kind") == GENERATOR_KIND:
        out = {"method": str(card.get("method")), "target": str(card.get("target"))}
        if card.get("against"):
            out["trained against"] = ", ".join(map(str, card["against"]))
    else:
        out = {"architecture": str(card.get("arch"))}
    classes = card.get("classes") or []
    if classes:
        out["classes"] = f"{len(classes)}: {', '.join(classes)}"
    patches = card.get("patches") or {}
    size = patches.get("size", card.get("patch_size"))
    if size:
        count = f", {patches['count']} voting" if patches.get("count") else ""
        out["patches"] = f"{size} px ({patches.get('name', 'grid')}{count})"
    pretrained = card.get("pretrained") or {}
    data = card.get("data") or {}
    if pretrained.get("bench"):
        out["training data"] = str(pretrained["bench"])
    elif data.get("patch_store"):
        out["training data"] = str(data["patch_store"])
    defense = card.get("defense") or {}
    out["defence"] = str(defense.get("kind", "none")) if isinstance(defense, dict) else "none"
    accuracy = pretrained.get("accuracy") or {}
    if "image" in accuracy:
        out["bench accuracy"] = (
            f"{accuracy['image']:.1%} by image, {accuracy.get('patch', float('nan')):.1%} a patch"
        )
    return out


class Catalogue:
    """The zoo's detectors and generators whose files are here, then those under ``folder``
    (``*.safetensors`` at any depth) and its PRNU fingerprints; files that are none of these
    are listed in ``skipped`` with the reason."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.detectors: dict[str, Offer] = {}
        self.spoof_detectors: dict[str, Offer] = {}
        self.generators: dict[str, Offer] = {}
        self.fingerprints: list[Fingerprint] = []
        self.skipped: list[str] = []
        self._loaded: dict[str, Detector] = {}
        self._lock = threading.Lock()
        for name, weights in zoo().items():
            if weights.path.is_file():
                self._add_detector(name, name, read_card(name))
        for name, weights in spoof_detector_zoo().items():
            if weights.path.is_file():
                self._add_detector(name, name, read_card(name))
        for name, weights in generator_zoo().items():
            if weights.path.is_file():
                self.generators[name] = Offer(name, name, read_generator_card(name), "generator")
        if folder is not None:
            self._scan(Path(folder))

    def _scan(self, folder: Path) -> None:
        if not folder.is_dir():
            raise CamtraceError(f"{folder}: no such folder; give a folder of checkpoints")
        for path in sorted(folder.rglob("*.safetensors")):
            key = DIR_PREFIX + path.relative_to(folder).as_posix()
            try:
                card = read_card(path)
            except CamtraceError as e:
                self.skipped.append(str(e))
                continue
            if card.get("kind") == GENERATOR_KIND:
                self.generators[key] = Offer(key, str(path), card, "generator")
            elif card.get("kind") == FINGERPRINT_KIND:
                self.fingerprints.append(load_fingerprint(path))
            elif "arch" in card:
                self._add_detector(key, str(path), card)
            else:
                self.skipped.append(f"{path}: a camtrace file of kind {card.get('kind')}")

    def _add_detector(self, key: str, source: str, card: dict[str, Any]) -> None:
        if tuple(card.get("classes", ())) == tuple(SPOOF_CLASSES):
            self.spoof_detectors[key] = Offer(key, source, card, "spoof detector")
        else:
            self.detectors[key] = Offer(key, source, card)

    def offer(self, key: str, kind: Kind = "detector") -> Offer:
        """The offer of that key; an unknown key lists the known ones."""
        offers = {
            "detector": self.detectors,
            "spoof detector": self.spoof_detectors,
            "generator": self.generators,
        }[kind]
        if key not in offers:
            raise CamtraceError(
                f"{kind} '{key}': not on offer; choose one of {', '.join(offers) or 'none'}"
            )
        return offers[key]

    def detector(self, key: str, kind: Kind = "detector") -> Detector:
        """The detector (or spoof detector) of ``key``, loaded (sha256-checked for the zoo) on
        first use."""
        offer = self.offer(key, kind)
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = load_detector(offer.source)
            return self._loaded[key]

    def generators_for(self, classes: list[str]) -> list[Offer]:
        """The generators that can spoof a detector of these ``classes``."""
        usable = []
        for offer in self.generators.values():
            try:
                check_classes(offer.card, classes, offer.key)
            except CamtraceError:
                continue
            usable.append(offer)
        return usable
