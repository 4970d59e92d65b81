"""PRNU device fingerprints: the noise residual of Lukas, Fridrich & Goljan 2006, the
maximum-likelihood fingerprint of Chen, Fridrich, Goljan & Lukas 2008 and its detection by
the peak-to-correlation energy (PCE) of Goljan, Fridrich & Filler 2009.

The sensor output model of Chen 2008: ``I = I0 + I0 K + Theta``; the residual
``W = I - F(I)`` of a denoiser ``F`` is ``I K`` plus noise, so a device's fingerprint ``K`` is
estimated from its photos and looked for in a photo's residual.

Colour, as in the papers' reference implementation (Binghamton's camera-fingerprint
toolbox, which Chen 2008 and Goljan 2009 describe): the residual is extracted from each
colour channel, and the fingerprint estimated per channel; both are combined into one
grey-scale array with the luminance weights ``LUMA`` (the toolbox's ``rgb2gray1``); a
photo's grey intensity ``I`` for the test is the same weighted sum of its channels.

Arrays: images are uint8 (N, H, W, 3) as everywhere in camtrace; residuals and fingerprints
are float (..., H, W), every function vectorised over the leading axes (a batch of photos or
of fingerprints). numpy, scipy and PyWavelets only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pywt
from scipy import fft
from scipy.ndimage import uniform_filter

from camtrace.errors import CamtraceError

LUMA = np.array([0.29893602, 0.58704307, 0.11402090])
"""R, G, B weights of the grey combination (the toolbox's ``rgb2gray1``, ITU-R BT.601)."""
THRESHOLD = 60.0
"""PCE at or above which a photo is declared the fingerprint's device's (Goljan 2009)."""
NEIGHBOURHOOD = 11
"""Side of the square around the correlation peak left out of the PCE's energy (Goljan 2009)."""
SATURATED_ABOVE = 250
"""A channel whose maximum exceeds this may be clipped (the toolbox's saturation rule)."""


@dataclass(frozen=True)
class ResidualSettings:
    """The noise-residual extractor of Lukas 2006, App. A: a ``levels``-level wavelet
    decomposition with ``wavelet`` (``db4``: the 8-tap Daubechies QMF of the papers), the
    detail coefficients' local variance by MAP over ``windows`` x ``windows`` neighbourhoods,
    Wiener shrinkage against the noise std ``sigma`` (grey levels)."""

    levels: int = 4
    wavelet: str = "db4"
    sigma: float = 5.0
    windows: tuple[int, ...] = (3, 5, 7, 9)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "windows": list(self.windows)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ResidualSettings:
        return cls(**{**values, "windows": tuple(values["windows"])})


def local_wiener_noise(
    coef: np.ndarray, noise_var: float | np.ndarray, windows: Sequence[int] = (3, 5, 7, 9)
) -> np.ndarray:
    """The noise part ``c sigma0^2 / (var + sigma0^2)`` of coefficients ``coef`` (..., H, W),
    i.e. ``c`` minus its Wiener estimate ``c var / (var + sigma0^2)`` (Lukas 2006, App. A,
    steps 2-3): ``var`` is the local variance of the noise-free signal, the smallest over the
    square windows of its MAP estimate ``max(0, mean_w(c^2) - sigma0^2)``. The windows wrap
    around the array's edges, as the periodic wavelet transform and the DFT do.
    ``noise_var`` is a number or an array broadcast against ``coef`` (one per image)."""
    energy = coef * coef
    box = (1,) * (coef.ndim - 2)
    variance = None
    for w in windows:
        local = np.maximum(uniform_filter(energy, (*box, w, w), mode="wrap") - noise_var, 0)
        variance = local if variance is None else np.minimum(variance, local)
    return coef * noise_var / (variance + noise_var)


def wavelet_noise(x: np.ndarray, settings: ResidualSettings = ResidualSettings()) -> np.ndarray:
    """``x - F(x)`` for arrays ``x`` (..., H, W) of grey levels, ``F`` the wavelet denoiser of
    Lukas 2006 (App. A): the detail subbands of every level shrunk by
    :func:`local_wiener_noise`, the approximation kept by ``F`` and so absent from the
    residual. As the toolbox does, ``x`` is padded symmetrically to a multiple of
    ``2**levels`` and transformed periodically; the padding is cut off after."""
    h, w = x.shape[-2:]
    step = 2**settings.levels
    ph, pw = (-h) % step, (-w) % step
    pad = [(0, 0)] * (x.ndim - 2) + [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)]
    coeffs = pywt.wavedec2(
        np.pad(x, pad, mode="symmetric") if ph or pw else x,
        settings.wavelet,
        mode="periodization",
        level=settings.levels,
        axes=(-2, -1),
    )
    var = settings.sigma**2
    noise = [np.zeros_like(coeffs[0])] + [
        tuple(local_wiener_noise(d, var, settings.windows) for d in details)
        for details in coeffs[1:]
    ]
    out = pywt.waverec2(noise, settings.wavelet, mode="periodization", axes=(-2, -1))
    return out[..., ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]


def channel_residuals(
    images: np.ndarray, settings: ResidualSettings = ResidualSettings()
) -> np.ndarray:
    """The residual ``W = I - F(I)`` of each colour channel: uint8 (N, H, W, 3) ->
    float32 (N, 3, H, W) (Lukas 2006; App. A for ``F``)."""
    _check_images(images)
    x = images.transpose(0, 3, 1, 2).astype(np.float32)
    return wavelet_noise(x, settings).astype(np.float32)


def grey(x: np.ndarray) -> np.ndarray:
    """Channels (..., 3, H, W) combined with the luminance weights: (..., H, W)."""
    return np.tensordot(LUMA.astype(x.dtype), x, axes=([0], [-3]))


def intensity(images: np.ndarray) -> np.ndarray:
    """The grey intensity ``I`` of uint8 photos (N, H, W, 3): float32 (N, H, W)."""
    return images.astype(np.float32) @ LUMA.astype(np.float32)


def zero_mean_total(x: np.ndarray) -> np.ndarray:
    """The linear pattern removed (Chen 2008): each of the four 2x2 CFA
    sub-lattices of ``x`` (..., H, W) made zero-mean, then zero-mean along every row and every
    column, so row and column artefacts shared by the devices of a model (readout, JPEG rows)
    cancel. Returns a new array."""
    out = np.array(x, dtype=np.result_type(x, np.float32), copy=True)
    for dy in (0, 1):
        for dx in (0, 1):
            sub = out[..., dy::2, dx::2]
            sub -= sub.mean(axis=(-2, -1), keepdims=True)
            sub -= sub.mean(axis=-1, keepdims=True)
            sub -= sub.mean(axis=-2, keepdims=True)
    return out


def wiener_dft(
    x: np.ndarray, sigma: float | np.ndarray | None = None, windows: Sequence[int] = (3, 5, 7, 9)
) -> np.ndarray:
    """Wiener filtering in the DFT domain (Chen 2008): the normalised magnitude
    ``|DFT(x)| / sqrt(HW)`` of each array (..., H, W) replaced by its noise part
    (:func:`local_wiener_noise`, noise std ``sigma``: default each array's own std), phase
    kept. White noise has a flat spectrum and passes; the peaks of periodic artefacts (JPEG's
    8x8 grid, CFA interpolation) stand out of their neighbourhood and are suppressed."""
    h, w = x.shape[-2:]
    if sigma is None:
        sigma = x.std(axis=(-2, -1), ddof=1)
    var = np.asarray(sigma, dtype=np.float64)[..., None, None] ** 2
    spectrum = fft.fft2(x, axes=(-2, -1))
    magnitude = np.abs(spectrum) / np.sqrt(h * w)
    kept = local_wiener_noise(magnitude, var, windows)
    scale = np.divide(kept, magnitude, out=np.zeros_like(magnitude), where=magnitude > 0)
    return fft.ifft2(spectrum * scale, axes=(-2, -1)).real.astype(x.dtype)


def noise_residual(
    images: np.ndarray, settings: ResidualSettings = ResidualSettings()
) -> np.ndarray:
    """The residual a photo is tested with: uint8 (N, H, W, 3) -> float32 (N, H, W): each
    channel's :func:`wavelet_noise`, combined to grey, :func:`zero_mean_total`, then
    :func:`wiener_dft` (Chen 2008; Goljan 2009)."""
    return wiener_dft(zero_mean_total(grey(channel_residuals(images, settings))))


def saturated(images: np.ndarray) -> np.ndarray:
    """Clipped pixels (N, H, W, 3) bool, left out of the estimate (Chen 2008: they carry no
    PRNU): at their channel's maximum, when that exceeds 250, and equal to one of their four
    neighbours (a flat clipped area, not a single bright pixel: the toolbox's rule)."""
    _check_images(images)
    top = images.max(axis=(1, 2), keepdims=True)
    at_top = (images == top) & (top > SATURATED_ABOVE)
    flat = np.zeros_like(at_top)
    for shift, axis in ((1, 1), (-1, 1), (1, 2), (-1, 2)):
        flat |= images == np.roll(images, shift, axis=axis)
    return at_top & flat


@dataclass
class FingerprintSums:
    """The running sums of the maximum-likelihood estimate ``K = sum_k W_k I_k / sum_k
    I_k^2`` (Chen 2008), per pixel and colour channel, saturated pixels left out;
    sums of disjoint sets of photos add (enrolment over processes)."""

    wi: np.ndarray  # (3, H, W) float64: sum of W I
    ii: np.ndarray  # (3, H, W) float64: sum of I^2
    count: int = 0

    @classmethod
    def empty(cls, size: tuple[int, int]) -> FingerprintSums:
        return cls(np.zeros((3, *size)), np.zeros((3, *size)))

    def add(
        self,
        images: np.ndarray,
        residuals: np.ndarray | None = None,
        settings: ResidualSettings = ResidualSettings(),
    ) -> FingerprintSums:
        """Add photos uint8 (N, H, W, 3) (with their :func:`channel_residuals`, computed when
        not given); returns self."""
        if images.shape[1:3] != self.wi.shape[1:]:
            raise CamtraceError(
                f"photos of {images.shape[2]}x{images.shape[1]} cannot join a fingerprint of "
                f"{self.wi.shape[2]}x{self.wi.shape[1]}; enrol photos of one size"
            )
        w = channel_residuals(images, settings) if residuals is None else residuals
        i = np.where(saturated(images), 0, images).transpose(0, 3, 1, 2).astype(np.float64)
        self.wi += np.einsum("nchw,nchw->chw", w, i)
        self.ii += np.einsum("nchw,nchw->chw", i, i)
        self.count += len(images)
        return self

    def __add__(self, other: FingerprintSums) -> FingerprintSums:
        return FingerprintSums(self.wi + other.wi, self.ii + other.ii, self.count + other.count)

    def estimate(self) -> np.ndarray:
        """The per-channel ML estimate (3, H, W); 0 where every photo was clipped."""
        return np.divide(self.wi, self.ii, out=np.zeros_like(self.wi), where=self.ii > 0)


def fingerprint(sums: FingerprintSums) -> np.ndarray:
    """The fingerprint a photo is tested against: the ML estimate's channels combined to grey,
    its linear pattern removed and Wiener-filtered in the DFT domain (Chen 2008:
    what the devices of a model share is not the device's): float32 (H, W)."""
    if sums.count == 0:
        raise CamtraceError("a fingerprint needs photos; none were added")
    return wiener_dft(zero_mean_total(grey(sums.estimate()))).astype(np.float32)


def cross_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The normalised circular cross-correlation ``rho(s) = sum_x a'(x) b'(x + s) / (|a'|
    |b'|)`` of arrays (..., H, W) (broadcast), ``a'`` and ``b'`` with their means removed
    (Goljan 2009), computed with the FFT; ``rho[0, 0]`` is the zero shift."""
    h, w = np.broadcast_shapes(a.shape, b.shape)[-2:]
    a = a - a.mean(axis=(-2, -1), keepdims=True)
    b = b - b.mean(axis=(-2, -1), keepdims=True)
    spectrum = np.conj(fft.rfft2(a, axes=(-2, -1))) * fft.rfft2(b, axes=(-2, -1))
    rho = fft.irfft2(spectrum, s=(h, w), axes=(-2, -1))
    norms = np.sqrt((a * a).sum(axis=(-2, -1)) * (b * b).sum(axis=(-2, -1)))
    return rho / np.where(norms > 0, norms, 1)[..., None, None]


@dataclass(frozen=True)
class Peak:
    """A correlation plane's peak: the PCE, its shift (dy, dx) and the correlation there."""

    pce: np.ndarray
    shift: np.ndarray
    rho: np.ndarray


def pce(
    rho: np.ndarray,
    search: tuple[int, int] | None = (0, 0),
    neighbourhood: int = NEIGHBOURHOOD,
) -> Peak:
    """The peak-to-correlation energy of correlation planes (..., H, W) (Goljan 2009):

        PCE = sign(rho(s_peak)) rho(s_peak)^2 / (1 / (HW - |N|) sum_{s not in N} rho(s)^2)

    with ``N`` the ``neighbourhood`` x ``neighbourhood`` square centred on the peak. The peak
    is the largest ``rho`` within ``search`` = (dy, dx) shifts of zero (photo and fingerprint
    aligned: ``(0, 0)``, the default), or anywhere with ``search=None`` (a cropped photo).
    Shifts are circular, so ``N`` wraps around the plane's edges: a peak at the zero shift
    (the corner ``[0, 0]``) has its neighbours in all four corners, and all of them are left
    out of the energy."""
    h, w = rho.shape[-2:]
    flat = rho.reshape(-1, h, w)
    if search is None:
        rows, cols = np.arange(h), np.arange(w)
    else:
        rows = np.arange(-min(search[0], h // 2), min(search[0], (h - 1) // 2) + 1) % h
        cols = np.arange(-min(search[1], w // 2), min(search[1], (w - 1) // 2) + 1) % w
    window = flat[:, rows[:, None], cols[None, :]].reshape(len(flat), -1)
    best = window.argmax(axis=1)
    py, px = rows[best // len(cols)], cols[best % len(cols)]
    peak = flat[np.arange(len(flat)), py, px]
    ry, rx = min(neighbourhood // 2, (h - 1) // 2), min(neighbourhood // 2, (w - 1) // 2)
    if (2 * ry + 1) * (2 * rx + 1) >= h * w:
        raise CamtraceError(
            f"a {w}x{h} correlation plane is no larger than the PCE's neighbourhood"
        )
    ny = (py[:, None] + np.arange(-ry, ry + 1)) % h
    nx = (px[:, None] + np.arange(-rx, rx + 1)) % w
    near = flat[np.arange(len(flat))[:, None, None], ny[:, :, None], nx[:, None, :]]
    outside = (flat**2).sum(axis=(1, 2)) - (near**2).sum(axis=(1, 2))
    energy = outside / (h * w - near[0].size)
    value = np.sign(peak) * peak**2 / energy
    shape = rho.shape[:-2]
    shift = np.stack([np.where(py > h // 2, py - h, py), np.where(px > w // 2, px - w, px)], -1)
    return Peak(value.reshape(shape), shift.reshape(*shape, 2), peak.reshape(shape))


def match_pce(
    residual: np.ndarray,
    luminance: np.ndarray,
    fingerprints: np.ndarray,
    search: tuple[int, int] | None = (0, 0),
    neighbourhood: int = NEIGHBOURHOOD,
    region: np.ndarray | None = None,
) -> Peak:
    """The PCE of one photo against fingerprints (F, H, W) (or one (H, W)): its
    :func:`noise_residual` (H, W) correlated with ``I K`` (Chen 2008: the
    fingerprint as the photo's own :func:`intensity` ``I``, its ``luminance``, would have
    imprinted it). With ``region`` (H, W) bool, only the region's pixels take part (each
    side centred on the region, zero outside), as Chen 2008 tests a block for tampering."""
    signal = luminance * fingerprints
    if region is not None:
        residual, signal = _within(residual, region), _within(signal, region)
    return pce(cross_correlation(residual, signal), search, neighbourhood)


def _within(x: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``x`` (..., H, W) minus its mean over ``region``, zero outside it."""
    mean = x.sum(axis=(-2, -1), where=region, keepdims=True) / max(int(region.sum()), 1)
    return np.where(region, x - mean, 0).astype(x.dtype)


def _check_images(images: Any) -> None:
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[-1] != 3
    ):
        kind = f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}"
        raise CamtraceError(f"PRNU: expected uint8 photos (N, H, W, 3), got {kind}")
