"""Synthetic-image sources at CPU size: small image generators of the architectures whose
up-sampling leaves spectral peaks (Cozzolino et al. 2021, SpoC, Sec. 5.1; Zhang et al. 2019).

SpoC's synthetic images come from StarGAN, CycleGAN, ProGAN, StyleGAN and RelGAN (training
and testing) and BigGAN (testing only). None can be downloaded here, so each is stood in for
by a network of the same up-sampling family, trained in ``camtrace.training.gan_sources``:

- ``dcgan``: transposed convolutions, kernel 4 stride 2 (Radford et al. 2016): the checkerboard
  of uneven kernel overlap (Odena et al. 2016), a peak at half the sampling rate;
- ``progan``: nearest-neighbour up-sampling followed by a 3x3 convolution (Karras et al. 2018):
  replicas of the low frequencies around multiples of 1 / 2^k of the sampling rate;
- ``autoencoder``: an image-to-image network whose decoder uses transposed convolutions (the
  role of CycleGAN and StarGAN, whose decoders do the same);
- ``pixelshuffle``: sub-pixel convolution (Shi et al. 2016), the architecture kept out of all
  detector training (SpoC's BigGAN role): a different up-sampler, a periodic pattern of its own.

Every generator grows a 4x4 map to the output side by doubling ``log2(size / 4)`` times, each
up block halving the channels; a 1x1 convolution (ProGAN's toRGB) and tanh give [-1, 1]
pixels. The 1x1 output layer filters nothing spatially, so the traces of the last up-sampling
reach the image unchanged. Widths are guesses at CPU size (SpoC's sources have tens of millions of
parameters; these have 0.1-2 million).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from camtrace.errors import CamtraceError

BASE = 4  # side of the first feature map
LATENT = 64  # length of the noise vector z


def up_block(kind: str, cin: int, cout: int) -> nn.Module:
    """One x2 up-sampling step of family ``kind``, then batch norm and ReLU (DCGAN's habit)."""
    if kind == "transposed":
        up: nn.Module = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
    elif kind == "nearest":
        up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1)
        )
    elif kind == "pixelshuffle":
        up = nn.Sequential(nn.Conv2d(cin, 4 * cout, 3, 1, 1), nn.PixelShuffle(2))
    else:
        raise CamtraceError(
            f"unknown up-sampling {kind!r}; choose transposed, nearest, pixelshuffle"
        )
    return nn.Sequential(up, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def doublings(size: int) -> int:
    """How many x2 steps take a 4x4 map to ``size`` (a power of two >= 8)."""
    steps = int(round(math.log2(max(size, 1) / BASE)))
    if steps < 1 or BASE * 2**steps != size:
        raise CamtraceError(
            f"synthetic image size {size} must be 4 times a power of two (8, 16, 32, 64, ...)"
        )
    return steps


def widths(size: int, width: int) -> list[int]:
    """Channels of the 4x4 map and after each up block: ``width`` at the output, doubled per
    step back towards the 4x4 map."""
    steps = doublings(size)
    return [width * 2 ** (steps - i) for i in range(steps + 1)]


def decoder(kind: str, channels: list[int]) -> nn.Sequential:
    """Up blocks through ``channels`` then toRGB (1x1) and tanh."""
    blocks = [up_block(kind, a, b) for a, b in zip(channels[:-1], channels[1:], strict=True)]
    return nn.Sequential(*blocks, nn.Conv2d(channels[-1], 3, 1), nn.Tanh())


class NoiseGenerator(nn.Module):
    """z (N, LATENT) -> image (N, 3, size, size) in [-1, 1] through ``up``-family blocks."""

    conditional = False

    def __init__(self, up: str, size: int, width: int = 16) -> None:
        super().__init__()
        channels = widths(size, width)
        self.stem = nn.Sequential(
            nn.Linear(LATENT, channels[0] * BASE * BASE),
            nn.Unflatten(1, (channels[0], BASE, BASE)),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        self.decode = decoder(up, channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(self.stem(z))


class Autoencoder(nn.Module):
    """image (N, 3, size, size) in [-1, 1] -> its reconstruction: up to three stride-2
    convolutions down, as many transposed convolutions back up (an image-to-image
    translator's shape)."""

    conditional = True

    def __init__(self, size: int, width: int = 16) -> None:
        super().__init__()
        channels = widths(size, width)[-4:]  # three doublings: bottleneck at size / 8
        down: list[nn.Module] = [nn.Conv2d(3, channels[-1], 3, 1, 1), nn.ReLU(inplace=True)]
        for cin, cout in zip(channels[:0:-1], channels[-2::-1], strict=True):
            down += [nn.Conv2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.encode = nn.Sequential(*down)
        self.decode = decoder("transposed", channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class Discriminator(nn.Module):
    """image (N, 3, size, size) in [-1, 1] -> one logit: stride-2 4x4 convolutions with spectral
    normalisation (Miyato et al. 2018) and leaky ReLU down to 4x4, then a linear layer."""

    def __init__(self, size: int, width: int = 16) -> None:
        super().__init__()
        channels = [3, *widths(size, width)[:0:-1]]
        layers: list[nn.Module] = []
        for cin, cout in zip(channels[:-1], channels[1:], strict=True):
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.out = spectral_norm(nn.Linear(channels[-1] * BASE * BASE, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x)).squeeze(1)


# name -> builder(size, width)
SOURCES = {
    "dcgan": lambda size, width: NoiseGenerator("transposed", size, width),
    "progan": lambda size, width: NoiseGenerator("nearest", size, width),
    "autoencoder": lambda size, width: Autoencoder(size, width),
    "pixelshuffle": lambda size, width: NoiseGenerator("pixelshuffle", size, width),
}
HELD_OUT = "pixelshuffle"  # SpoC's BigGAN: never shown to a detector in training


def build_source(name: str, size: int, width: int = 16) -> nn.Module:
    """The generator of source ``name`` (a key of :data:`SOURCES`) for ``size`` px images."""
    if name not in SOURCES:
        raise CamtraceError(f"unknown synthetic source {name!r}; choose one of {sorted(SOURCES)}")
    return SOURCES[name](size, width)
