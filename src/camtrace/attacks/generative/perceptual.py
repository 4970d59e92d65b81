"""SpoC's perceptual loss L_PER (Sec. 4.2, "following [27]", pix2pixHD's VGG loss): the sum
over VGG-19's relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1 of the weighted L1 distance
(weights 1/32, 1/16, 1/8, 1/4, 1) between the features of x and G(x).

SpoC uses VGG-19 trained on ImageNet; nothing may be downloaded here, so by default the same
architecture has fixed random weights (He-normal, seeded), a known stand-in for a perceptual
loss: random convolutional features still compare local structure across scales (He, Wang &
Hopcroft 2016; Ulyanov et al. 2018), unlike the embedder's features, which are trained to see
camera traces and would fight the very change G must make. With ``weights`` (a user-supplied
safetensors file of torchvision's ``vgg19().state_dict()``, ``features.*`` entries used) the
ImageNet network of the paper is used instead. Input normalised with ImageNet's mean and std.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from torchvision.models import vgg19

from camtrace.errors import CamtraceError

LAYERS = (1, 6, 11, 20, 29)  # indices of relu1_1 .. relu5_1 in vgg19().features
WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class PerceptualLoss(nn.Module):
    """L_PER on float pixels [0, 255]; frozen (no parameter takes a gradient)."""

    def __init__(self, weights: str | Path | None = None, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            features = vgg19(weights=None).features[: LAYERS[-1] + 1]
        if weights is not None:
            _load(features, Path(weights))
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", 255 * torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", 255 * torch.tensor(STD).view(1, 3, 1, 1))
        self.source = "ImageNet VGG-19 from " + str(weights) if weights else "random VGG-19"

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - self.mean) / self.std
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in LAYERS:
                out.append(h)
        return out

    def forward(self, spoof: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self._taps(x)
        return sum(
            (
                w * (a.float() - b.float()).abs().mean()  # fp32 distances under autocast
                for w, a, b in zip(WEIGHTS, self._taps(spoof), target)
            ),
            torch.zeros((), device=x.device),
        )


def _load(features: nn.Sequential, path: Path) -> None:
    """``features.*`` of a torchvision VGG-19 state dict saved as safetensors."""
    try:
        state = load_file(str(path))
        mine = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        wanted = features.state_dict()
        features.load_state_dict({k: mine[k] for k in wanted}, strict=True)
    except (OSError, SafetensorError, KeyError, RuntimeError) as e:
        raise CamtraceError(
            f"{path}: not a VGG-19 weight file ({type(e).__name__}); give a safetensors file "
            "of torchvision's vgg19().state_dict(), or none for the random-feature loss"
        ) from None
