"""The detector zoo: Tuama2016, MISLnet, DenseNet-40, Xception, InceptionV3, Spec."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camtrace.errors import CamtraceError
from camtrace.models import Detector, build, load_detector, save_detector
from camtrace.models.registry import model_spec
from camtrace.models.tuama2016 import KV_KERNEL

CLASSES = [f"Maker_M{i}" for i in range(10)]

# (arch, native patch size, a small patch size it also runs on)
ZOO = [
    ("tuama2016", 256, 64),
    ("mislnet", 256, 64),
    ("densenet40", 32, 64),
    ("xception", 256, 64),
    ("inceptionv3", 256, 96),
    ("yang2018", 64, 32),
    ("spec", 256, 64),
    ("spoofnet", 64, 32),
]
# Parameter counts at 10 classes beyond the native patch (the native ones are counted from the
# papers' layer lists below): how a patch size changes the head, recorded from the networks.
PARAMS = {
    ("tuama2016", 64): 18_128_746,
    ("mislnet", 64): 347_243,
    ("densenet40", 64): 1_019_722,  # the same at any patch size, as for the timm models
    ("xception", 64): 20_827_442,
    ("inceptionv3", 96): 21_806_058,
    ("yang2018", 64): 395_674,  # the same at any patch size (global average pooling)
    ("spec", 64): 193_178,  # the same at any patch size; fc 64*4*4 * 128 + 128 is 131,200
    ("marra2017", 64): 0,  # hand-crafted SPAM features; its SVMs are fitted buffers
    # Bayar 6x3x5x5 (no bias) 450; conv 3x3 15->16, 16->16, 16->32, 32->64 (no bias, BN):
    # 2,192 + 2,336 + 4,672 + 18,560; fc 64*10 + 10; the SRM filters are a fixed buffer
    ("spoofnet", 64): 28_860,
}
EMBED_DIM = {
    "tuama2016": 4096,
    "mislnet": 200,
    "densenet40": 448,
    "xception": 2048,
    "inceptionv3": 2048,
    "yang2018": 256,
    "spec": 128,
    "spoofnet": 64,
}


# Only these two have layers sized by the patch; the others are built once and run at any size.
SIZED = {"tuama2016", "mislnet"}


@cache
def net(arch: str, patch_size: int) -> Detector:
    """One seeded network per (arch, size): timm models take seconds to initialise."""
    torch.manual_seed(0)
    return build(arch, CLASSES, patch_size).eval()


def instance(arch: str, native: int, small: int, size: int) -> Detector:
    """The network that runs ``size`` x ``size`` patches in these tests."""
    return net(arch, size) if arch in SIZED else net(arch, small)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def pixels(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g).float()


@pytest.mark.parametrize(("arch", "native", "small"), ZOO)
def test_logits_and_embedding_shapes_at_native_and_small_size(
    arch: str, native: int, small: int
) -> None:
    for size in (native, small):
        det = instance(arch, native, small, size)
        assert det.arch == arch and det.num_classes == 10
        x = pixels(1, size)
        with torch.no_grad():
            e = det.embed(x)
            logits = det(x)
        assert e.shape == (1, EMBED_DIM[arch])
        assert logits.shape == (1, 10) and torch.isfinite(logits).all()
        assert torch.equal(det.head(e), logits)


@pytest.mark.parametrize(("arch", "native", "small"), ZOO)
def test_default_patch_size_is_the_native_one(arch: str, native: int, small: int) -> None:
    assert model_spec(arch).patch_size == native
    assert net(arch, small).patch_size == small


@pytest.mark.parametrize(("arch", "size"), sorted(PARAMS))
def test_parameter_counts(arch: str, size: int) -> None:
    assert n_params(net(arch, size)) == PARAMS[arch, size]


def conv(k: int, c_in: int, c_out: int, bias: bool = True, bn: bool = False) -> int:
    """Parameters of a k x k convolution (and of the BatchNorm after it: scale and shift)."""
    return k * k * c_in * c_out + (c_out if bias else 0) + (2 * c_out if bn else 0)


def fc(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def mislnet_count(classes: int = 10) -> int:
    """Bayar & Stamm 2018, Table I, at 256 px: constrained conv 5x5x3 (3 filters, no bias),
    conv 7x7/2 96, conv 5x5 64, conv 5x5 64, conv 1x1 128 (each BN, tanh, maxpool 3/2: 256 ->
    252 -> 126 -> 63 -> 31 -> 15 -> 7), fc 200, fc 200, classes."""
    body = conv(5, 3, 3, bias=False) + conv(7, 3, 96, False, True) + conv(5, 96, 64, False, True)
    body += conv(5, 64, 64, False, True) + conv(1, 64, 128, False, True)
    return body + fc(128 * 7 * 7, 200) + fc(200, 200) + fc(200, classes)


def tuama_count(classes: int = 10) -> int:
    """Tuama et al. 2016, Fig. 2, at 256 px: fixed KV high-pass 5x5 (252), conv 3x3/2 64
    (125), pool 3/2 (62), conv 5x5 64, pool (30), conv 3x3 32, pool (15), fc 4096, fc 4096,
    classes."""
    body = conv(3, 3, 64) + conv(5, 64, 64) + conv(3, 64, 32)
    return body + fc(32 * 15 * 15, 4096) + fc(4096, 4096) + fc(4096, classes)


PAPER_COUNTS = {("mislnet", 256): mislnet_count(), ("tuama2016", 256): tuama_count()}
"""Counted by hand from the papers' layer lists, at 10 classes and the native patch."""


@pytest.mark.parametrize(("arch", "size"), sorted(PAPER_COUNTS))
def test_parameter_counts_follow_the_papers_layer_lists(arch: str, size: int) -> None:
    assert n_params(net(arch, size)) == PAPER_COUNTS[arch, size]


def test_parameter_counts_match_the_papers() -> None:
    # Huang et al. 2017, Tab. 2: DenseNet (L=40, k=12) has 1.0M parameters (CIFAR-10).
    assert abs(PARAMS["densenet40", 64] - 1.0e6) < 0.05e6
    # Chollet 2017, Tab. 3: Xception has 22,855,952 parameters with a 1000-way classifier.
    assert PARAMS["xception", 64] + 990 * (2048 + 1) == 22_855_952
    # timm's inception_v3 without the auxiliary head: 23,834,568 at 1000 classes (Keras,
    # without BN scales, counts 23,626,728 in Chollet's Tab. 3).
    assert PARAMS["inceptionv3", 96] + 990 * (2048 + 1) == 23_834_568


def sgd_steps(det: Detector, size: int, steps: int, lr: float) -> None:
    """A few real training steps on random patches, projecting after each like the trainer."""
    det.train()
    opt = torch.optim.SGD(det.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = pixels(4, size, seed=int(torch.randint(0, 1000, (1,), generator=g)))
        y = torch.randint(0, det.num_classes, (4,), generator=g)
        opt.zero_grad()
        F.cross_entropy(det(x), y).backward()
        opt.step()
        det.project_constraints()
    det.eval()


def assert_constrained(w: torch.Tensor) -> None:
    centre = w[:, :, 2, 2]
    off_sum = w.sum(dim=(2, 3)) - centre
    assert torch.equal(centre, torch.full_like(centre, -1.0))
    assert torch.allclose(off_sum, torch.ones_like(off_sum), atol=1e-5)


def test_constrained_conv_holds_after_real_sgd_steps() -> None:
    torch.manual_seed(3)
    det = build("mislnet", CLASSES, 64).to(memory_format=torch.channels_last)  # as the trainer
    w = det.constrained.weight
    assert w.shape == (3, 3, 5, 5)
    assert_constrained(w)
    before = w.detach().clone()
    sgd_steps(det, 64, steps=3, lr=1e-3)
    assert not torch.allclose(w, before)  # the filters did learn
    assert_constrained(w)


def test_constrained_projection_is_safe_when_a_step_zeroes_the_sum() -> None:
    torch.manual_seed(4)
    det = build("mislnet", CLASSES, 64)
    conv = det.constrained
    off = torch.ones(5, 5)
    off[2, 2] = 0
    lr = 0.5
    opt = torch.optim.SGD([conv.weight], lr=lr)
    # A gradient whose step takes 1/24 off every off-centre weight: their sums go from 1 to ~0.
    conv.weight.grad = (off / 24 / lr).expand_as(conv.weight).clone()
    conv.weight.grad += 1e-7 * torch.randn_like(conv.weight)
    opt.step()
    stepped = conv.weight.detach().clone()
    raw_sum = stepped.sum(dim=(2, 3)) - stepped[:, :, 2, 2]
    assert raw_sum.abs().max() < 1e-4
    det.project_constraints()
    assert_constrained(conv.weight)
    # The projection shifts every off-centre tap by (1 - sum) / 24, it never rescales.
    shift = (conv.weight - stepped)[:, :, off.bool()]
    assert torch.allclose(shift, torch.full_like(shift, 1 / 24), atol=1e-5)


def test_kv_filter_is_fixed_and_unchanged_by_training() -> None:
    torch.manual_seed(5)
    det = build("tuama2016", CLASSES, 64)
    assert "kv" not in dict(det.named_parameters())
    sgd_steps(det, 64, steps=2, lr=1e-2)
    assert torch.equal(det.kv, KV_KERNEL.expand(3, 1, 5, 5))
    # An impulse returns the (symmetric) kernel on each channel; a flat patch has no residual.
    impulse = torch.zeros(1, 3, 9, 9)
    impulse[:, :, 4, 4] = 12.0
    residual = det.preprocess(impulse)
    assert residual.shape == (1, 3, 5, 5)
    assert torch.allclose(residual[0, 1], KV_KERNEL * 12)
    assert det.preprocess(torch.full((1, 3, 9, 9), 200.0)).abs().max() < 1e-4


def test_yang_laplacian_is_zhaos_fixed_filter_in_fp32_under_autocast() -> None:
    from camtrace.models.yang2018 import LAPLACIAN

    torch.manual_seed(6)
    det = build("yang2018", CLASSES, 64)
    assert "laplacian" not in dict(det.named_parameters())
    assert LAPLACIAN.tolist() == [[0, -1, 0], [-1, 4, -1], [0, -1, 0]]  # Zhao eq. 1
    sgd_steps(det, 64, steps=2, lr=1e-2)
    assert torch.equal(det.laplacian, LAPLACIAN.expand(3, 1, 3, 3))
    impulse = torch.zeros(1, 3, 7, 7)
    impulse[:, :, 3, 3] = 1.0
    response = det.preprocess(impulse)
    assert response.shape == (1, 3, 7, 7)  # 'same' size
    assert torch.equal(response[0, 2, 2:5, 2:5], LAPLACIAN)  # symmetric kernel: itself
    x = pixels(2, 64, seed=3)
    seen = []
    det.body.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = det.eval()(x)
    assert seen[0].dtype == torch.float32 and torch.equal(seen[0], det.preprocess(x))
    assert logits.shape == (2, 10)


def test_densenet_fits_per_channel_mean_and_std() -> None:
    det = build("densenet40", CLASSES)
    g = torch.Generator().manual_seed(6)
    patches = torch.randint(0, 256, (40, 32, 32, 3), generator=g, dtype=torch.uint8)
    patches[..., 2] //= 4  # a darker, flatter blue channel
    det.fit_preprocessing(patches)
    arr = patches.numpy().reshape(-1, 3).astype(np.float64)
    assert np.allclose(det.mean.flatten().numpy(), arr.mean(0), atol=1e-3)
    assert np.allclose(det.std.flatten().numpy(), arr.std(0), atol=1e-3)
    z = det.preprocess(patches.permute(0, 3, 1, 2).float())
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)


def test_timm_models_scale_pixels_to_unit_range_and_inception_refuses_tiny_patches() -> None:
    x = torch.tensor([0.0, 127.5, 255.0]).view(1, 3, 1, 1)
    assert torch.equal(net("xception", 64).preprocess(x).flatten(), torch.tensor([-1.0, 0.0, 1.0]))
    with pytest.raises(CamtraceError, match="inceptionv3.*75"):
        build("inceptionv3", CLASSES, 64)


@pytest.mark.parametrize(("arch", "native", "small"), ZOO)
def test_checkpoint_round_trip_gives_identical_logits(
    arch: str, native: int, small: int, tmp_path: Path
) -> None:
    det = net(arch, small)
    if arch == "densenet40":
        det.fit_preprocessing(torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8))
    path = save_detector(det, tmp_path / arch)
    back = load_detector(path, arch=arch, classes=CLASSES)
    assert back.patch_size == small and back.hparams == det.hparams
    x = pixels(2, min(native, small), seed=7)
    with torch.no_grad():
        assert torch.equal(det(x), back(x))


@pytest.mark.parametrize(("arch", "native", "small"), ZOO)
def test_channels_last_forward_equals_contiguous(arch: str, native: int, small: int) -> None:
    det = net(arch, small)
    x = pixels(2, min(native, small), seed=9)
    with torch.no_grad():
        ref = det(x)
        det.to(memory_format=torch.channels_last)
        out = det(x.contiguous(memory_format=torch.channels_last))
        det.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_tuama_lrn_as_banded_conv_equals_pytorch_local_response_norm() -> None:
    """Same weights, LocalResponseNorm swapped back in: the same logits and input gradients."""
    torch.manual_seed(11)
    det = build("tuama2016", CLASSES, 64).eval()
    ref = copy.deepcopy(det)
    for i in (2, 6):
        ref.body[i] = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)
    assert n_params(ref) == n_params(det) == PARAMS["tuama2016", 64]
    x = (pixels(3, 64, seed=12) * 4).requires_grad_()  # residuals of tens: LRN really divides
    out, expected = det(x), ref(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    (g,) = torch.autograd.grad(out.square().sum(), x)
    (g_ref,) = torch.autograd.grad(expected.square().sum(), x)
    # summation orders differ (a 1x1 conv vs a pooling): fp32 rounding on sums that cancel
    scale = g_ref.abs().max().item()
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5 * scale)
