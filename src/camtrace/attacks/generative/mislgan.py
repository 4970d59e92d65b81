"""MISLGAN (Chen, Zhao & Stamm 2019) and Adv-Cam-Id (its discriminator-free variant).

Generator (Sec. 3.2, Fig. 2-3): a synthetic colour-filter-array block re-mosaics the input to
one Bayer pattern, so the source camera's demosaicing traces are gone and the network has to
re-demosaic the image with the target's traces; then ConvBlock N=64 and ConvBlock N=128 (each
conv 3x3 + ReLU, conv 3x3 + ReLU, conv 1x1 + ReLU, stride 1) and the feature-map reduction
(conv 3x3 to 3 channels + ReLU). Discriminator (Sec. 3.2): the Bayar-Stamm constrained network
(the zoo's MISLnet) whose last layer is one neuron with a sigmoid, "real" = 1. Loss (Eq. 2-5):
L_G = alpha L_p + beta L_c + gamma L_a with L_p the mean absolute difference, L_c the
cross-entropy of the classifier toward the target, L_a = log(1 - D(G(I))). Adv-Cam-Id is the
same with gamma = 0 and no discriminator (Cozzolino et al. 2021, SpoC, Sec. C of the
supplement).

Guesses (Chen does not state them):
- Pattern: RGGB. Chen says only "the Bayer pattern"; the four Bayer arrangements are shifts of
  each other, and the generator sees the mosaic as three sparse channels (the sampled colour
  kept, the other two zero) so its convolutions know which colour each sample is.
- Pixel scale: the mosaic enters as [0, 1] (pixels / 255); the reduction block's ReLU output is
  read in the same unit and capped at 1, so G(I) = 255 min(ReLU(z), 1) lies in [0, 255]. The
  ReLU already gives the lower bound; the cap (ours) keeps the upper one.
- Initialisation: TensorFlow's defaults (Chen used TensorFlow): Glorot-uniform weights and zero
  biases. Padding "same" (k // 2, zeros) so the output has the input's size.
- Units of L_p: grey levels (0-255), so alpha = beta = 1 weighs one grey level of mean error as
  one nat of cross-entropy. Settled by measurement (``configs/mislgan-alpha.yaml``, kept in
  ``results/mislgan-alpha``): after 150 iterations against the zoo's MISLnet, grey levels keep
  the image (20 dB, climbing) at SAR 0%, alpha 0.1 gives SAR 98% at 19 dB, the [0, 1] scale
  (1/255) SAR 98% at 7 dB; at Chen's 42.7 dB and more (an RMS error under 2 grey levels) only
  grey levels leave L_p of the order of L_c.
- The classifier and the discriminator see G(I) rounded to the 8-bit grid (straight-through
  gradient): the attack is judged on uint8 images, and a discriminator shown fractional values
  beside the uint8 originals would tell them apart by the rounding alone.
- L_a is the saturating log(1 - D(G(I))) exactly as Eq. 5 writes it (computed stably as
  -softplus of the logit). The discriminator is updated first on the 60-patch batch (30
  generated, rounded and detached, + the 30 originals), then the generator on the same 30,
  L_a reading D's logits of the generated half of that same 60-patch batch (batch norm).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from camtrace.models.mislnet import MISLnet

BAYER = "RGGB"
CHANNEL = {"R": 0, "G": 1, "B": 2}


def bayer_mask(height: int, width: int, pattern: str = BAYER) -> torch.Tensor:
    """(3, H, W) 0/1 mask with exactly one 1 per pixel: the colour the Bayer ``pattern`` (its
    2x2 cell read row by row, e.g. "RGGB") samples there."""
    mask = torch.zeros(3, height, width)
    for k, colour in enumerate(pattern):
        mask[CHANNEL[colour], k // 2 :: 2, k % 2 :: 2] = 1
    return mask


class SyntheticCFA(nn.Module):
    """Chen Sec. 3.2: re-mosaic to one Bayer pattern, one colour sample per pixel, the two
    unsampled colours set to 0 (three sparse channels)."""

    def __init__(self, pattern: str = BAYER) -> None:
        super().__init__()
        if sorted(pattern) != ["B", "G", "G", "R"]:
            raise ValueError(f"Bayer pattern '{pattern}' must be a 2x2 cell like RGGB or GRBG")
        self.pattern = pattern

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * bayer_mask(*x.shape[-2:], self.pattern).to(x)


class ConvBlock(nn.Sequential):
    """Chen Fig. 3 (left): conv N@3x3 + ReLU, conv N@3x3 + ReLU, conv N@1x1 + ReLU, stride 1."""

    def __init__(self, c_in: int, n: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, n, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(n, n, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(n, n, 1),
            nn.ReLU(),
        )


class MISLGANGenerator(nn.Module):
    """Chen Fig. 2: synthetic CFA -> ConvBlock 64 -> ConvBlock 128 -> reduction conv 3@3x3 +
    ReLU. Takes and gives float pixels in [0, 255] (N, 3, H, W), any H and W."""

    halo = 8  # receptive-field radius: five 3x3 convolutions reach 5 px, rounded up to 4s

    def __init__(self, pattern: str = BAYER) -> None:
        super().__init__()
        self.hparams = {"pattern": pattern}
        self.cfa = SyntheticCFA(pattern)
        self.body = nn.Sequential(
            ConvBlock(3, 64), ConvBlock(64, 128), nn.Conv2d(128, 3, 3, padding=1), nn.ReLU()
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body[:-2](self.cfa(x) / 255)
        # the reduction in fp32 even under autocast: bf16 holds [0.5, 1) in steps of a grey level
        with torch.autocast(x.device.type, enabled=False):
            return 255 * self.body[-2:](features.float()).clamp(max=1)

    def to_grid(self, y: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The nearest 8-bit image (no budget to respect)."""
        return y.round().clamp(0, 255)


class Discriminator(nn.Module):
    """Chen Sec. 3.2: the zoo's MISLnet (Bayar-Stamm constrained network, colour input) with
    its last fully connected layer replaced by one neuron; ``forward`` gives the logit of
    "real" (the sigmoid lives in the loss, for numerical stability)."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.net = MISLnet(["generated", "real"], patch_size)
        self.net.classifier = nn.Linear(self.net.classifier.in_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)

    def project_constraints(self) -> None:
        """Re-impose the constrained layer after every optimiser step, as the zoo does."""
        self.net.project_constraints()


def discriminator_loss(d: Discriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of Eq. 1 on one batch of the originals (label 1) and the
    generated patches made from them (label 0)."""
    logits = d(torch.cat([real, fake]))
    labels = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))]).to(logits)
    return F.binary_cross_entropy_with_logits(logits, labels)


def adversarial_loss(d: Discriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Eq. 5, L_a = log(1 - D(G(I))) = -softplus(logit), averaged over the generated patches.

    D sees the batch it is trained on (the originals, then the patches generated from them)
    and the generated half's logits are read: D's batch normalisation then works as in its
    own update. Shown the generated patches alone, a train-mode D normalises away the very
    difference it learned (after 2,100 iterations toward Halden H20: 0.0001 "real" on the
    generated half of its batch, 0.46 on the same patches alone), and L_a pulls on noise."""
    return -F.softplus(d(torch.cat([real, fake]))[len(real) :]).mean()


def perceptual_loss(fake: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Eq. 3, L_p: mean absolute difference in grey levels."""
    return (fake - x).abs().mean()
