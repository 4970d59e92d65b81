"""The detectors and generators on offer: the pretrained zoo, and every camtrace checkpoint
found under a folder, each with its card's summary; a detector is loaded once and kept.

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
from camtrace.models.zoo import generator_zoo, zoo

DIR_PREFIX = "dir:"


@dataclass(frozen=True)
class Offer:
    """One checkpoint on offer: its ``key``, what ``load_detector`` / ``--generator`` takes
    (``source``: a zoo name or a file), its card and its kind."""

    key: str
    source: str
    card: dict[str, Any] = field(repr=False)
    kind: Literal["detector", "generator"] = "detector"

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
    (``*.safetensors`` at any depth); files that are no camtrace checkpoint are listed in
    ``skipped`` with the reason."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.detectors: dict[str, Offer] = {}
        self.generators: dict[str, Offer] = {}
        self.skipped: list[str] = []
        self._loaded: dict[str, Detector] = {}
        self._lock = threading.Lock()
        for name, weights in zoo().items():
            if weights.path.is_file():
                self.detectors[name] = Offer(name, name, read_card(name))
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
            else:
                self.detectors[key] = Offer(key, str(path), card)

    def offer(self, key: str, kind: Literal["detector", "generator"] = "detector") -> Offer:
        """The offer of that key; an unknown key lists the known ones."""
        offers = self.detectors if kind == "detector" else self.generators
        if key not in offers:
            raise CamtraceError(
                f"{kind} '{key}': not on offer; choose one of {', '.join(offers) or 'none'}"
            )
        return offers[key]

    def detector(self, key: str) -> Detector:
        """The detector of ``key``, loaded (sha256-checked for the zoo) on first use."""
        offer = self.offer(key)
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
