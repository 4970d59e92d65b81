"""GAP: image-dependent targeted generative adversarial perturbations (Poursaeed et al. 2018),
as SpoC (Cozzolino et al. 2021, supplement Sec. C) uses it as a baseline: a ResNet generator
(Johnson et al. 2016, the one GAP uses) makes a perturbation that is scaled to an Linf budget
``eps`` (8 in 0-255 by default, SpoC's setting) and added to the image; it is trained toward
the target class of one detector or of an ensemble (the mean of their losses).

Guesses, written from the papers (Poursaeed et al. state the architecture by reference only):
- ResNet generator: reflection pad 3, conv 7x7 64 + BatchNorm + ReLU, two stride-2 conv 3x3
  (128, 256), six residual blocks of 256 (conv 3x3, BN, ReLU, conv 3x3, BN, reflection
  padding), two stride-2 transposed conv 3x3 (128, 64), reflection pad 3, conv 7x7 to 3, tanh.
  H and W must be multiples of 4 (the two strides); other sizes are reflect-padded and cropped.
- Input on [-1, 1] (pixels / 127.5 - 1); the tanh output read as 255 tanh(z) grey levels.
- Scaling to the budget: each image's channel is multiplied by min(1, eps / its Linf norm),
  the norm taken without gradient (Poursaeed et al.'s per-image, per-channel normalisation in
  pixel units); the sum is clipped to [0, 255].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from camtrace.attacks.grid import round_in_linf_ball

STRIDE = 4  # two stride-2 convolutions


class ResnetBlock(nn.Module):
    """x + (pad, conv 3x3, BN, ReLU, pad, conv 3x3, BN)(x) (Johnson et al. 2016)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _conv_bn_relu(c_in: int, c_out: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2 if stride > 1 else 0, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(c_in, c_out, 3, 2, padding=1, output_padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


class GAPGenerator(nn.Module):
    """ResNet generator + the Linf budget: ``forward`` takes and gives float pixels in
    [0, 255] (N, 3, H, W); ``|forward(x) - x| <= eps`` everywhere."""

    # receptive-field radius: conv 7 (3 px), two stride-2 conv 3 (1 + 2), twelve conv 3 at
    # stride 4 (48), two transposed conv 3 (4 + 2), conv 7 (3): 63 px, rounded up to 4s
    halo = 64

    def __init__(self, eps: float = 8.0, ngf: int = 64, blocks: int = 6) -> None:
        super().__init__()
        if not float(eps) > 0:
            raise ValueError(f"GAP budget eps={eps} must be > 0 (0-255 pixel units)")
        self.eps = float(eps)
        self.hparams = {"eps": self.eps, "ngf": ngf, "blocks": blocks}
        self.net = nn.Sequential(
            nn.ReflectionPad2d(3),
            *_conv_bn_relu(3, ngf, 7),
            *_conv_bn_relu(ngf, 2 * ngf, 3, stride=2),
            *_conv_bn_relu(2 * ngf, 4 * ngf, 3, stride=2),
            *(ResnetBlock(4 * ngf) for _ in range(blocks)),
            *_up(4 * ngf, 2 * ngf),
            *_up(2 * ngf, ngf),
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, 3, 7),
            nn.Tanh(),
        )

    def perturbation(self, x: torch.Tensor) -> torch.Tensor:
        """The raw perturbation 255 tanh(z) for pixels ``x`` (any H, W)."""
        h, w = x.shape[-2:]
        ph, pw = -h % STRIDE, -w % STRIDE
        z = F.pad(x / 127.5 - 1, (0, pw, 0, ph), mode="reflect") if ph or pw else x / 127.5 - 1
        return 255 * self.net(z)[..., :h, :w]

    def budget(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Poursaeed 2018's scaling: ``delta`` shrunk per image and channel to the Linf budget,
        added to ``x``. Per whole image, so a tiled image is scaled once, after stitching."""
        norm = delta.detach().abs().amax(dim=(-2, -1), keepdim=True)
        delta = delta * (self.eps / norm.clamp_min(1e-12)).clamp(max=1)
        return (x + delta).clamp(0, 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.budget(x, self.perturbation(x))

    def to_grid(self, y: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The nearest 8-bit image inside the budget."""
        return round_in_linf_ball(y, x0, self.eps)
