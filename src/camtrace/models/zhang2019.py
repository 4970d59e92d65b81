"""Spec: the spectrum-based GAN-image detector of Zhang, Karaman & Chang (WIFS 2019, AutoGAN),
as SpoC challenges it (Cozzolino et al. 2021, Sec. 5.1, Tables 1-2).

Up-sampling in a generator replicates the spectrum of its feature maps, so GAN images carry
peaks at fractions of the sampling rate (Zhang et al. 2019, Sec. 3); Spec classifies the image
spectrum instead of the pixels. Input transform: the 4-neighbour Laplacian high-pass of each
colour channel (circular, so the DFT of the residual is exactly the DFT of the patch times the
filter's response), its 2-D DFT magnitude, centred (DC in the middle), log(1 + |F|), scaled
to [-1, 1] by its bound (AutoGAN scales its log spectrum to [-1, 1]; a per-patch
standardisation trained far slower on the toy case of tests/test_synthetic.py). The
classifier is a small CNN (four conv 3x3 - batch norm - ReLU - max-pool blocks, 16 -> 64
channels, an adaptive average pool to 4x4 that keeps where in the spectrum the energy is,
fc 128 = embedding, fc to the classes).

Guesses and departures (documented): AutoGAN feeds the plain image spectrum to an
ImageNet-pretrained ResNet-34; here no pretrained weights exist and the patches are small, so
the scene's 1/f^2 energy, which would dominate a plain log spectrum, is taken off by the
high-pass first (the same residual the spectra figure shows, SpoC Fig. 4) and the classifier
is trained from scratch at CPU size.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from camtrace.errors import CamtraceError
from camtrace.models.base import Detector, in_fp32
from camtrace.models.registry import register
from camtrace.models.spec import ModelSpec

# 4-neighbour Laplacian, scaled so its response 1 - (cos wx + cos wy) / 2 is 2 at (pi, pi)
LAPLACIAN = torch.tensor([[0.0, -0.25, 0.0], [-0.25, 1.0, -0.25], [0.0, -0.25, 0.0]])


def highpass(x: torch.Tensor) -> torch.Tensor:
    """Laplacian residual of each channel of (N, C, H, W) floats, circular boundary."""
    c = x.shape[1]
    kernel = LAPLACIAN.to(x)[None, None].expand(c, 1, 3, 3)
    padded = nn.functional.pad(x, (1, 1, 1, 1), mode="circular")
    return nn.functional.conv2d(padded, kernel, groups=c)


def residual_spectrum(x: torch.Tensor) -> torch.Tensor:
    """|DFT| of the high-pass residual of (N, C, H, W) pixels, centred: bin (H//2, W//2) is DC,
    bin (H//2 + k, W//2 + l) is frequency (k / H, l / W) cycles per pixel."""
    spectrum = torch.fft.fft2(highpass(x.float()))
    return torch.fft.fftshift(spectrum.abs(), dim=(-2, -1))


def spec_input(x: torch.Tensor) -> torch.Tensor:
    """Spec's network input: log(1 + |DFT| of the residual) mapped to [-1, 1] by its bound:
    |DFT| <= 255 * 2 * H * W (pixels <= 255, the high-pass gain <= 2)."""
    h, w = x.shape[-2:]
    top = math.log1p(255 * 2 * h * w)
    return 2 * torch.log1p(residual_spectrum(x)) / top - 1


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


@register(
    ModelSpec(
        name="spec",
        paper="Zhang, Karaman & Chang, WIFS 2019; Cozzolino et al. 2021",
        patch_size=256,
        min_patch_size=16,
        protocol="gan",
        mixed_precision=False,  # not checked yet: fp32 until benchmarks/mixed_precision.py passes
    )
)
class Spec(Detector):
    """Log spectrum of the high-pass residual -> small CNN -> real / synthetic logits."""

    def __init__(self, classes: list[str], patch_size: int | None = None) -> None:
        super().__init__(classes, patch_size)
        self.body = nn.Sequential(
            _block(3, 16),
            _block(16, 32),
            _block(32, 64),
            _block(64, 64),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(64 * 16, 128),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(128, self.num_classes)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return in_fp32(spec_input, x)

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)

    def head(self, e: torch.Tensor) -> torch.Tensor:
        return self.fc(e)


@torch.no_grad()
def mean_residual_spectrum(images_uint8: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Average over images and colour channels of :func:`residual_spectrum`: the spectra of
    SpoC Fig. 4, where up-sampling shows as peaks. (N, H, W, 3) uint8 -> (H, W) float64."""
    images = np.asarray(images_uint8)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or not len(images):
        raise CamtraceError(
            f"images: expected (N, H, W, 3) uint8 with N >= 1, got {images.dtype} {images.shape}"
        )
    total = np.zeros(images.shape[1:3])
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size]).permute(0, 3, 1, 2)
        total += residual_spectrum(x).sum(dim=(0, 1)).double().numpy()
    return total / (3 * len(images))
