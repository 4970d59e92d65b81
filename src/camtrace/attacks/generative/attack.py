"""The generative attacks behind the common attack call (docs/architecture.md, "Attack call").

``make_attack("mislgan", generator=PATH_OR_MODULE)`` (also "advcamid", "gap", "spoc") gives an
attack like every other: ``attack(detector, images_uint8, target=None, labels=None) ->
(adv_uint8, AttackInfo)``, success judged on the uint8 output (and after JPEG when ``jpeg`` is
set) with an fp32 forward. The attack itself is one forward pass of the generator (``steps`` =
1). Images larger than the generator's training patch are cut into tiles of that size, each
run with a border of the generator's receptive-field radius (``halo``; replicate-padded at
the image's edge) whose output is dropped, and stitched, as Chen Sec. 3.4 deploys MISLGAN:
the same pixels as one pass over the whole image, without its memory, and no seam along the
tile grid. Tiles and borders are multiples of 4, so the synthetic CFA keeps one Bayer phase.
A generator whose halo is wide beside its patch (GAP: 64 px around 64 px tiles, 9x the
pixels) gets tiles of several patches, at least 4 halos wide (the border then costs at most
2.25x), which changes no pixel.
The target defaults to the generator's; another is an error.
A SpoC generator knows no detector: its target is a camera model name, found among the
detector's classes (a detector without it is an error).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from camtrace.attacks.base import Attack, AttackInfo, Goal, Images, Target, register_attack, require
from camtrace.attacks.generative.checkpoint import check_classes, load_generator
from camtrace.attacks.generative.methods import get_method
from camtrace.attacks.precision import AttackModel
from camtrace.errors import CamtraceError
from camtrace.models.inference import eval_mode


def wide_tile(patch: int, halo: int) -> int:
    """The tile side for a generator trained on ``patch`` px with a receptive-field radius of
    ``halo``: whole patches spanning at least 4 halos, so the discarded border costs at most
    (1 + 2/4)^2 = 2.25x the tile's own pixels."""
    return patch * -(-4 * halo // patch)


class GenerativeAttack(Attack):
    """A trained generator as an attack. ``generator``: a checkpoint path (its card gives the
    target, the detector classes and the patch size) or a generator module (a loaded one
    keeps its card; a bare one needs ``target`` at every call). ``patch_size``: the tile side
    (default: the card's training patch, times the patches it takes to span 4 halos; None on
    a bare module: the whole image at once)."""

    matrix = False  # the matrix's generative column, not one of its gradient columns

    needs_gradient = False
    inapplicable = {
        "early_stop": "one forward pass of the generator has nothing to stop",
        "through_jpeg": "the generator takes no gradient at attack time",
        "seed": "the generator is deterministic",
    }

    def __init__(
        self,
        generator: str | Path | nn.Module | None = None,
        patch_size: int | None = None,
        **options: Any,
    ) -> None:
        # no gradient pass to speed up: fp32 spares "auto" its timing of the detector
        super().__init__(**{"precision": "fp32", **options})
        require(
            generator is not None,
            f"{self.name}: give generator= (a checkpoint written by train_generator, or a module)",
        )
        method = get_method(self.name)
        if isinstance(generator, nn.Module):
            require(
                isinstance(generator, method.generator),
                f"{self.name}: generator is a {type(generator).__name__}, not a "
                f"{method.generator.__name__}",
            )
            card = getattr(generator, "card", None)
            require(
                card is None or card["method"] == self.name,
                f"{self.name}: the generator module was trained as {card and card['method']}",
            )
            self.generator = generator
        else:
            self.generator = load_generator(generator, method=self.name)
        self.card: dict[str, Any] | None = getattr(self.generator, "card", None)
        self.patch_size = patch_size or (
            wide_tile(self.card["patch_size"], self.generator.halo) if self.card else None
        )
        require(
            self.patch_size is None or (int(self.patch_size) > 0 and self.patch_size % 4 == 0),
            f"{self.name}: patch_size={patch_size} must be a positive multiple of 4",
        )

    def __call__(
        self, detector: nn.Module, images: Images, target: Target = None, labels: Target = None
    ) -> tuple[Images, AttackInfo]:
        """As every attack; ``target`` defaults to the generator's and may only repeat it."""
        return super().__call__(detector, images, self.target_for(detector, target), labels)

    def target_for(self, detector: nn.Module, target: Target) -> Target:
        """The class index this generator spoofs on ``detector`` (``target`` None: its own);
        a one-line error for another target or other classes."""
        if self.card is None:
            require(
                target is not None,
                f"{self.name}: this generator module has no card; give target= (its class index)",
            )
            return target
        classes = getattr(detector, "classes", None)
        check_classes(self.card, classes, self.name)
        mine = target_index(self.card, classes, self.name)
        if target is None:
            return mine
        given = torch.as_tensor(target).long().flatten()
        if (given != mine).any():
            raise CamtraceError(
                f"{self.name}: this generator spoofs {self.card['target']} (class {mine}), not "
                f"class {given[given != mine][0].item()}; train a generator toward that target"
            )
        return given

    def aim(self, clean_logits: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor | None:
        classes = (self.card or {}).get("classes")
        if classes is not None and clean_logits.shape[1] != len(classes):
            raise CamtraceError(
                f"{self.name}: generator trained against {len(classes)} classes, "
                f"the detector gives {clean_logits.shape[1]}; train one against this detector"
            )
        return target

    def run(
        self, model: AttackModel, x0: torch.Tensor, goal: Goal, aim: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._generate(x0), torch.ones(len(x0), dtype=torch.long, device=x0.device)

    def spoof_image(self, image: np.ndarray) -> np.ndarray:
        """One whole (H, W, 3) uint8 image through the generator, on the 8-bit grid (Chen
        Sec. 3.4): tiles with the generator's halo, so every pixel is what one pass over the
        whole image gives and no seam follows the tile grid."""
        x = torch.tensor(image, dtype=torch.float32).permute(2, 0, 1)[None]  # a copy: read-only ok
        y = self.to_grid(self._generate(x), x)
        return y[0].permute(1, 2, 0).to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def _generate(self, x: torch.Tensor) -> torch.Tensor:
        """The generator's float output on ``x`` (tiled), on the generator's device and dtype,
        given back on ``x``'s."""
        param = next(self.generator.parameters())
        with eval_mode(self.generator):
            return self._tiled(x.to(param.device, param.dtype)).to(x.device, x.dtype)

    def _tiled(self, x: torch.Tensor) -> torch.Tensor:
        """The generator on ``patch_size`` tiles of ``x``, stitched (Chen Sec. 3.4). Each
        tile is computed with a border of the generator's ``halo`` (its receptive-field
        radius) around it and only its centre kept, so every output pixel sees the same
        neighbourhood as in one pass over the whole image: no seam along the tile grid. A
        generator with a per-image ``budget`` (GAP) has its perturbation stitched and then
        scaled once, as one pass over the whole image scales it."""
        p, (h, w) = self.patch_size, x.shape[-2:]
        if p is None or (h <= p and w <= p):
            return self.generator(x)
        budget = getattr(self.generator, "budget", None)
        if budget is None:
            return self._stitched(self.generator, x)
        return budget(x, self._stitched(self.generator.perturbation, x))

    def _stitched(
        self, net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
    ) -> torch.Tensor:
        """``net`` on the haloed ``patch_size`` tiles of ``x``, the tiles' centres stitched."""
        p, (h, w) = self.patch_size, x.shape[-2:]
        m = self.generator.halo
        padded = F.pad(x, (m, m + -w % p, m, m + -h % p), mode="replicate")
        n, c = len(x), x.shape[1]
        tiles = padded.unfold(2, p + 2 * m, p).unfold(3, p + 2 * m, p)
        nh, nw = tiles.shape[2], tiles.shape[3]
        tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, p + 2 * m, p + 2 * m)
        size = max(1, self.options.batch_size * 64**2 // p**2)  # batch_size 64-px tiles' pixels
        out = torch.cat(
            [
                net(tiles[i : i + size])[..., m : m + p, m : m + p]
                for i in range(0, len(tiles), size)
            ]
        )
        out = out.reshape(n, nh, nw, c, p, p).permute(0, 3, 1, 4, 2, 5)
        return out.reshape(n, c, nh * p, nw * p)[..., :h, :w]

    def to_grid(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The generator's own rounding (GAP: inside its budget)."""
        return self.generator.to_grid(x, x0)


@register_attack
class MISLGANAttack(GenerativeAttack):
    """MISLGAN (Chen et al. 2019): generator trained with the discriminator."""

    name = "mislgan"


@register_attack
class AdvCamIdAttack(GenerativeAttack):
    """Adv-Cam-Id (Chen et al.'s generator without discriminator, SpoC's baseline)."""

    name = "advcamid"


@register_attack
class GAPAttack(GenerativeAttack):
    """GAP (Poursaeed et al. 2018), image-dependent and targeted."""

    name = "gap"


@register_attack
class SpoCAttack(GenerativeAttack):
    """SpoC (Cozzolino et al. 2021): a generator trained on the target camera's images
    alone; the detector it meets only has to know the target among its classes."""

    name = "spoc"


def target_index(card: dict[str, Any], classes: list[str] | None, where: str) -> int:
    """The class index of a generator's target: the card's own when it was trained against
    a detector, else (SpoC) the target camera's place among the detector's ``classes``."""
    if "target_index" in card:
        return int(card["target_index"])
    if classes is None:
        raise CamtraceError(
            f"{where}: the detector has no .classes to find {card['target']} in; give target="
        )
    return list(classes).index(card["target"])
