"""SpoC (Cozzolino, Thies, Rössler, Nießner & Verdoliva 2021): its three networks and losses.

The generator G = T_M injects the traces of one camera model M into an image, trained only
on images of M (no detector, no other camera's labels) against a patch discriminator D that
tells real images of M from both the synthetic inputs and their spoofs (Eq. 5), and an
embedder E pre-trained with the triplet loss on many other camera models (Sec. 4.1, supp.
Sec. A). Generator loss (Eq. 1-4, 6): L_G = L_REC + lambda_p L_PER + lambda_E (L_DST +
lambda_f L_FM) + lambda_A L_ADV.

Guesses (no public code; the paper and supplement do not say):
- Fixed layer: the 3rd-order derivative is the finite difference [-1, 3, -3, 1] along each
  row (horizontal) and each column (vertical) of each colour, with no padding (SpoC's
  discriminator pads nothing); the 9 channels are cropped to their common (H-3, W-3) window,
  RGB and vertical derivative taken from columns 1..W-3, RGB and horizontal from rows 1..H-3.
  RGB enters on SpoC's [-1, 1] scale, the derivatives in grey levels (0-255 units): a
  camera's traces are a few grey levels, and spectral normalisation keeps every layer's gain
  at most 1, so a residual on the [-1, 1] scale (1/127.5 a grey level) would reach the later
  layers far below their biases. Always fp32 (docs/architecture.md, "Detector").
- Embedder: channels 64, 213, 363, 512 (a linear increase from 64 to 512 over the 4 blocks),
  3x3 convolutions padded by 1, no activation after a block's sum (the supplement: "the
  outputs of the two branches are then summed up to obtain the final output tensor").
- Generator: 3x3 kernels (Chen's and GAP's choice for this depth), reflection padding (the
  generator runs tile by tile on whole images; zero padding would mark every tile border),
  channels 3 -> 64, 64, 64 -> 128, 128, 128 -> 3 ("from 64 to 128 after the first three").
  The Gaussian pre-filter (sigma 0.4) is 3x3 with reflection padding (the weights beyond
  radius 1 are below 4e-6); the input added back before tanh is the filtered one, the one
  that entered the network. G takes and gives float pixels in [0, 255]: x -> x / 127.5 - 1
  -> G -> 127.5 (y + 1); the attack rounds to the 8-bit grid.
- Discriminator: ReLU after the first convolution too; spectral normalisation on the four
  blocks only (the supplement names it for them); mean-only batch norm = subtract the
  batch's per-channel mean and add a learnt bias (Salimans & Kingma 2016), a running mean
  in eval mode; D's output is a map of patch logits, every loss averages over the map.
- Distance: ||a - b||_1 of Eq. 3 (d(x) and d_ref) is the mean absolute difference per
  embedding dimension (the L1 norm / 512). SpoC's margin
  m = 0.01 is only meaningful against such a per-dimension distance: against a sum over 512
  dimensions it is nothing, and L_DST (about 40 on the sum) outweighed L_REC (about 0.06, a
  per-pixel mean on the [-1, 1] scale) by 700 times: SpoC collapsed to 9 dB in 30
  iterations; on the mean both are of one order, and SpoC holds 28-30 dB after 20-30
  iterations, as the only-discriminator ablation does. The embedder's triplet loss keeps
  the sum with margin 1: with unnormalised embeddings a triplet margin only sets their
  scale (a sum with margin 1 is a per-dimension mean with margin 1/512), and d_ref, measured
  on the embedder's own scale, carries that scale into L_DST; so the cached embedder stays.
- Feature matching (L_FM): the real and spoofed images are not paired, so, as Salimans et
  al. 2016 define it, the L1 distance between the batch-mean (over images and positions)
  features of each embedder block, summed over the 4 blocks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

THIRD_ORDER = (-1.0, 3.0, -3.0, 1.0)  # finite-difference 3rd derivative
EMBEDDING = 512
SIGMA = 0.4  # SpoC Sec. 4.1: the Gaussian pre-filter of the generator


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Pixels [0, 255] -> SpoC's [-1, 1]."""
    return x / 127.5 - 1


class ResidualLayer(nn.Module):
    """SpoC Sec. 4.1: the fixed first layer of D and E, float pixels [0, 255] (N, 3, H, W)
    -> (N, 9, H-3, W-3): RGB on [-1, 1], then the horizontal and the vertical 3rd-order
    derivatives of each colour in grey levels. Computed in fp32 even under autocast."""

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor(THIRD_ORDER)
        self.register_buffer("horizontal", taps.view(1, 1, 1, 4).repeat(3, 1, 1, 1))
        self.register_buffer("vertical", taps.view(1, 1, 4, 1).repeat(3, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            h = F.conv2d(x, self.horizontal, groups=3)[..., 1:-2, :]
            v = F.conv2d(x, self.vertical, groups=3)[..., :, 1:-2]
            return torch.cat([to_unit(x[..., 1:-2, 1:-2]), h, v], dim=1)


def sn_conv(c_in: int, c_out: int, k: int, **kwargs: int | str | bool) -> nn.Module:
    """A convolution under spectral normalisation (Miyato et al. 2018)."""
    return spectral_norm(nn.Conv2d(c_in, c_out, k, **kwargs))


class EmbedderBlock(nn.Module):
    """Supp. Fig. 7: conv 1x1 branch + (conv 3x3 - ReLU - conv 3x3) branch, summed."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.skip = sn_conv(c_in, c_out, 1)
        self.body = nn.Sequential(
            sn_conv(c_in, c_out, 3, padding=1), nn.ReLU(), sn_conv(c_out, c_out, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


def embedder_widths(blocks: int = 4, first: int = 64, last: int = EMBEDDING) -> list[int]:
    """Supp. Sec. A: channels increasing linearly from ``first`` to ``last``."""
    return [round(first + k * (last - first) / (blocks - 1)) for k in range(blocks)]


class Embedder(nn.Module):
    """Supp. Sec. A: fixed layer, 4 residual blocks each followed by average pooling 2,
    global max pooling -> a 512-d camera-model embedding. Input: float pixels [0, 255],
    sides of at least 19 (3 for the fixed layer, 16 for the poolings)."""

    def __init__(self) -> None:
        super().__init__()
        self.hparams: dict[str, int] = {}
        self.residual = ResidualLayer()
        widths = [9, *embedder_widths()]
        self.blocks = nn.ModuleList(EmbedderBlock(a, b) for a, b in zip(widths, widths[1:]))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each block's pooled output (the maps L_FM matches)."""
        maps, h = [], self.residual(x)
        for block in self.blocks:
            h = F.avg_pool2d(block(h), 2)
            maps.append(h)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[-1].amax(dim=(-2, -1))


class MeanOnlyBatchNorm(nn.Module):
    """Mean-only batch normalisation (Salimans & Kingma 2016): x - batch mean + bias per
    channel; the running mean (momentum 0.1) stands in for the batch mean in eval mode."""

    def __init__(self, channels: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean = x.mean(dim=(0, 2, 3))
            with torch.no_grad():  # the statistic stays float32 under bf16 autocast
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
        else:
            mean = self.running_mean
        return x - (mean - self.bias).view(1, -1, 1, 1)


class SpoCDiscriminator(nn.Module):
    """Supp. Sec. A / Fig. 6: fixed layer, conv 3x3 64 + ReLU, 4 x (conv 3x3 64 with spectral
    norm, mean-only batch norm, ReLU), conv 3x3 -> 1; no padding anywhere: a (N, 1, H-15,
    W-15) map of "real" logits, one per receptive field (a patch discriminator)."""

    def __init__(self, width: int = 64, blocks: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [ResidualLayer(), nn.Conv2d(9, width, 3), nn.ReLU()]
        for _ in range(blocks):
            layers += [sn_conv(width, width, 3, bias=False), MeanOnlyBatchNorm(width), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Conv2d(width, 1, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def gaussian_kernel(sigma: float = SIGMA) -> torch.Tensor:
    """The normalised 3x3 Gaussian of ``sigma`` (per colour: shape (3, 1, 3, 3))."""
    g = torch.tensor([math.exp(-(d**2) / (2 * sigma**2)) for d in (-1, 0, 1)])
    k = torch.outer(g, g)
    return (k / k.sum()).expand(3, 1, 3, 3).clone()


class SpoCGenerator(nn.Module):
    """SpoC Sec. 4.1, supp. Fig. 5: Gaussian pre-filter (sigma 0.4), 7 convolutions of stride
    1 (3x3, 64 -> 128 channels, spectral norm on the 5 middle ones, ReLU but after the last),
    the filtered input added back, tanh. Float pixels [0, 255] (N, 3, H, W) in and out."""

    halo = 8  # receptive-field radius: the 3x3 pre-filter and seven 3x3 convolutions, 8 px

    def __init__(self, kernel: int = 3, sigma: float = SIGMA) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"SpoC generator kernel={kernel} must be odd and >= 1")
        self.hparams = {"kernel": kernel, "sigma": sigma}
        self.register_buffer("blur", gaussian_kernel(sigma))
        widths = [3, 64, 64, 64, 128, 128, 128, 3]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            conv = nn.Conv2d(a, b, kernel, padding=kernel // 2, padding_mode="reflect")
            layers.append(spectral_norm(conv) if 0 < i < 6 else conv)
            if i < 6:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        smooth = F.conv2d(F.pad(to_unit(x), (1, 1, 1, 1), mode="reflect"), self.blur, groups=3)
        return 127.5 * (torch.tanh(self.net(smooth) + smooth) + 1)

    def to_grid(self, y: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The nearest 8-bit image (SpoC bounds no perturbation)."""
        return y.round().clamp(0, 255)


def l1_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a - b||_1 / dim over the last (embedding) dimension, broadcast over the others: the
    per-dimension mean absolute difference (see the module's guesses)."""
    return (a - b).abs().mean(dim=-1)


def triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Triplet loss (Schroff et al. 2015) on every valid (anchor, positive, negative) triplet
    of the batch, [d(a, p) - d(a, n) + margin]_+ with d the L1 sum (module guesses),
    averaged over the triplets that still violate the margin (Hermans et al. 2017's
    "batch all"; 0 when none does)."""
    d = (embeddings[:, None] - embeddings[None]).abs().sum(-1)
    same = labels[:, None] == labels[None]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    valid = (same & ~eye)[:, :, None] & ~same[:, None, :]  # [anchor, positive, negative]
    loss = F.relu(d[:, :, None] - d[:, None, :] + margin)[valid]
    active = loss > 0
    return loss[active].mean() if active.any() else loss.sum()


def anchor(embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sec. 4.2: the anchor e_M = E_z[E(z)] of the target's real images and the reference
    distance d_ref = E_z[||E(z) - e_M||_1] (per dimension, :func:`l1_distance`)."""
    e_m = embeddings.mean(0)
    return e_m, l1_distance(embeddings, e_m).mean()


def distance_loss(
    spoof_embeddings: torch.Tensor, e_m: torch.Tensor, d_ref: torch.Tensor, margin: float = 0.01
) -> torch.Tensor:
    """Eq. 3, L_DST = E_x [ ||E(G(x)) - e_M||_1 - d_ref + m ]_+ with m = 0.01, the distance
    per dimension (:func:`l1_distance`)."""
    return F.relu(l1_distance(spoof_embeddings, e_m) - d_ref + margin).mean()


def feature_matching_loss(real: list[torch.Tensor], spoof: list[torch.Tensor]) -> torch.Tensor:
    """L_FM (Sec. 4.2): per embedder block, the mean absolute difference of the real and
    spoofed batch-mean features, summed over the blocks (see the module's guesses)."""
    return sum(
        ((r.mean(dim=(0, 2, 3)) - s.mean(dim=(0, 2, 3))).abs().mean() for r, s in zip(real, spoof)),
        torch.zeros(()),
    )


def discriminator_loss(
    real_logits: torch.Tensor, spoof_logits: torch.Tensor, input_logits: torch.Tensor
) -> torch.Tensor:
    """Eq. 5, L_D = -E[log D(z)] - 1/2 E[log(1 - D(G(x))) + log(1 - D(x))], D = sigmoid of
    the logits, each expectation over images and patch positions."""
    return F.softplus(-real_logits).mean() + 0.5 * (
        F.softplus(spoof_logits).mean() + F.softplus(input_logits).mean()
    )


def adversarial_loss(spoof_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 6, L_ADV = -E[log D(G(x))]."""
    return F.softplus(-spoof_logits).mean()


def reconstruction_loss(spoof: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sec. 4.2, L_REC = E||x - G(x)||_1 as the mean absolute difference on SpoC's [-1, 1]
    scale (the scale its loss weights were set on)."""
    return (spoof - x).abs().mean() / 127.5
