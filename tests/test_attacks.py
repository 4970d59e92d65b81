"""Gradient attacks: equality with torchattacks in float mode, the uint8 contract, model
hygiene, targeted success, the TI kernel and JPEG re-compression."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchattacks
from PIL import Image
from torch import nn

from camtrace import hardware
from camtrace.attacks import (
    ATTACKS,
    FGSM,
    JSMA,
    LLCM,
    PGD,
    TIMIFGSM,
    AttackOptions,
    Jpeg,
    as_pixel_eps,
    make_attack,
    recompress,
)
from camtrace.attacks.generative import GAPGenerator, MISLGANGenerator, SpoCGenerator
from camtrace.attacks.gradient import depthwise_smooth, gaussian_kernel
from camtrace.attacks.grid import round_in_l2_ball
from camtrace.attacks.interop import UnitRangeDetector
from camtrace.attacks.precision import AttackModel, resolve_precision
from camtrace.errors import CamtraceError
from camtrace.models import build

GRADIENT = ["fgsm", "llcm", "bim", "pgd", "pgd-l2", "mifgsm", "timifgsm"]
# untrained generators (tests/test_generative.py trains them): for the model-hygiene checks
GENERATORS = {
    "mislgan": {"generator": MISLGANGenerator()},
    "advcamid": {"generator": MISLGANGenerator()},
    "gap": {"generator": GAPGenerator()},
    "spoc": {"generator": SpoCGenerator()},
}


pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder(nn.Module):
    """Wraps a detector and keeps every input it is shown."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.detector(x)


class TinyBN(nn.Module):
    """Small CNN with BatchNorm and Dropout, for the train/eval hygiene checks."""

    def __init__(self, channels: int = 3, classes: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 8, 3),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(128, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 127.5) / 64)


@pytest.fixture(scope="module")
def bondi() -> nn.Module:
    torch.manual_seed(0)
    return build("bondi2017", [f"M{i}" for i in range(10)]).eval()


@pytest.fixture(scope="module")
def bondi64(bondi) -> nn.Module:
    """The same detector in float64, so no gradient sign flips on rounding noise between
    our 0-255 units and torchattacks' [0, 1] units."""
    det = build("bondi2017", bondi.classes).double()
    det.load_state_dict(bondi.state_dict())
    return det.eval()


def patches_of(seed: int, n: int = 4) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


@pytest.fixture(scope="module")
def patches() -> torch.Tensor:
    return patches_of(1)


def reference(name: str, model: nn.Module):
    """The torchattacks twin of each of our attacks, with the same eps/steps (in [0, 1] units)."""
    return {
        "fgsm": ({"eps": 4}, lambda: torchattacks.FGSM(model, eps=4 / 255)),
        "bim": (
            {"eps": 4, "alpha": 1, "steps": 2},
            lambda: torchattacks.BIM(model, 4 / 255, 1 / 255, 2),
        ),
        "pgd": (
            {"eps": 4, "alpha": 1, "steps": 2, "seed": 5},
            lambda: torchattacks.PGD(model, 4 / 255, 1 / 255, 2),
        ),
        "pgd-l2": (
            {"eps": 90, "alpha": 30, "steps": 2, "seed": 5},
            lambda: torchattacks.PGDL2(model, 90 / 255, 30 / 255, 2),
        ),
        "mifgsm": (
            {"eps": 4, "alpha": 1, "steps": 2},
            lambda: torchattacks.MIFGSM(model, 4 / 255, 1 / 255, 2, 1.0),
        ),
    }[name]


@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd", "pgd-l2", "mifgsm"])
@pytest.mark.parametrize("targeted", [False, True])
def test_float_mode_matches_torchattacks(bondi64, patches, name: str, targeted: bool) -> None:
    det, patches = bondi64, patches[:2]
    kwargs, make_reference = reference(name, UnitRangeDetector(det))
    stop = {} if name == "fgsm" else {"early_stop": False}
    ours = make_attack(name, quantize=False, **stop, **kwargs)
    with torch.no_grad():
        pred = det(patches.double()).argmax(1)
    target = (pred + 3) % 10 if targeted else None
    adv, info = ours(det, patches, target)
    torch.manual_seed(5)  # torchattacks draws its random start from the global generator
    ref = make_reference()
    if targeted:
        ref.set_mode_targeted_by_label(quiet=True)
    expected = ref(patches.double() / 255, target if targeted else pred) * 255
    assert adv.dtype == torch.float64
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)
    assert info.targeted == targeted


def test_ti_mi_fgsm_matches_torchattacks_tifgsm(bondi64, patches) -> None:
    det, patches = bondi64, patches[:2]
    ref = torchattacks.TIFGSM(
        UnitRangeDetector(det),
        8 / 255,
        0.4 / 255,
        3,
        decay=1.0,
        len_kernel=7,
        nsig=3,
        diversity_prob=0.0,
    )
    ref.stacked_kernel = ref.stacked_kernel.double()
    with torch.no_grad():
        pred = det(patches.double()).argmax(1)
    expected = ref(patches.double() / 255, pred) * 255
    # torchattacks' nsig=3 over 7 taps is sigma = (7 - 1) / 6 = 1 pixel, our default
    adv, _ = TIMIFGSM(8, 0.4, 3, kernel_size=7, quantize=False, early_stop=False)(det, patches)
    torch.testing.assert_close(adv, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", GRADIENT)
def test_quantised_output_is_uint8_in_the_ball_and_success_is_on_it(
    bondi, patches, name: str
) -> None:
    eps = 90.5 if name == "pgd-l2" else 2.5  # fractional eps: rounding must not leave the ball
    kwargs = (
        {"eps": eps} if name in ("fgsm", "llcm") else {"eps": eps, "alpha": eps / 3, "steps": 4}
    )
    rec = Recorder(bondi)
    adv, info = make_attack(name, **kwargs)(rec, patches)
    assert adv.dtype == torch.uint8 and adv.shape == patches.shape
    # the model only ever sees 8-bit values, except in the last call that measures float_success
    assert all(torch.equal(x, x.round()) for x in rec.seen[:-1])
    delta = adv.float() - patches.float()
    if name == "pgd-l2":
        assert (delta.flatten(1).norm(dim=1) <= eps + 1e-4).all()
    else:
        assert delta.abs().max() <= 2
    with torch.no_grad():
        logits = bondi(adv.float())
        pred, clean = logits.argmax(1), bondi(patches.float()).argmax(1)
    torch.testing.assert_close(info.success, pred != clean)
    # the one verdict evaluation reads: the detector's fp32 soft-max on the uint8 output
    torch.testing.assert_close(info.scores, logits.softmax(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(info.linf, delta.flatten(1).abs().amax(1))
    torch.testing.assert_close(info.l0, (delta != 0).flatten(1).sum(1))
    assert info.success.any()


def test_numpy_in_numpy_out(bondi, patches) -> None:
    hwc = patches.permute(0, 2, 3, 1).numpy().copy()
    adv_np, info_np = make_attack("bim", eps=3, steps=2)(bondi, hwc)
    adv_t, info_t = make_attack("bim", eps=3, steps=2)(bondi, patches)
    assert isinstance(adv_np, np.ndarray) and adv_np.dtype == np.uint8 and adv_np.shape == hwc.shape
    np.testing.assert_array_equal(adv_np, adv_t.permute(0, 2, 3, 1).numpy())
    torch.testing.assert_close(info_np.success, info_t.success)


def test_batches_give_the_same_result_as_one_batch(bondi, patches) -> None:
    whole, info_whole = make_attack("mifgsm", eps=3, steps=3)(bondi, patches)
    split, info_split = make_attack("mifgsm", eps=3, steps=3, batch_size=3)(bondi, patches)
    torch.testing.assert_close(whole, split, atol=0, rtol=0)
    torch.testing.assert_close(info_whole.steps, info_split.steps)


def test_passes_of_a_few_samples_make_the_whole_batch_gradient(bondi64, monkeypatch) -> None:
    x = torch.rand(7, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = torch.arange(7) % 10
    x_ref = x.clone().requires_grad_(True)
    logits_ref = bondi64(x_ref)
    (grad_ref,) = torch.autograd.grad(F.cross_entropy(logits_ref, y, reduction="sum"), x_ref)
    model = AttackModel(bondi64, "fp32", pass_size=3)
    logits, grad = model.gradient(
        x, lambda part, out, rows: F.cross_entropy(out, y[rows], reduction="sum")
    )
    torch.testing.assert_close(logits, logits_ref.detach())
    torch.testing.assert_close(grad, grad_ref)
    torch.testing.assert_close(model.judge(x), logits_ref.detach())
    assert model.judge(x[:0]).shape == (0, 10)
    for n in (1, 3, 4, 7, 35):  # the fewest passes of at most 3, sizes within one of each other
        sizes = [s.stop - s.start for s in model.passes(n)]
        assert sum(sizes) == n and len(sizes) == -(-n // 3) and max(sizes) - min(sizes) <= 1
    # a whole attack in passes of 3 gives what it gives in one pass (float64: no sign flips)
    many = torch.cat([patches_of(3), patches_of(4)])
    pgd = make_attack("pgd", eps=4, alpha=1, steps=3, seed=0, precision="fp32")
    monkeypatch.setitem(hardware.ATTACK_PASS, "cpu", 3)
    in_passes, info_passes = pgd(bondi64, many)
    monkeypatch.delitem(hardware.ATTACK_PASS, "cpu")
    in_one, info_one = pgd(bondi64, many)
    torch.testing.assert_close(in_passes, in_one, atol=0, rtol=0)
    torch.testing.assert_close(info_passes.steps, info_one.steps)


def test_each_batch_draws_its_own_random_start(bondi) -> None:
    same = patches_of(1)[:1].repeat(4, 1, 1, 1)
    adv, _ = make_attack("noise", eps=2, seed=0, batch_size=2)(bondi, same)
    assert not torch.equal(adv[0], adv[2])  # one seed per call, not one per batch
    again, _ = make_attack("noise", eps=2, seed=0, batch_size=2)(bondi, same)
    torch.testing.assert_close(adv, again, atol=0, rtol=0)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_mode_restored_no_parameter_grads_no_batchnorm_update(name: str) -> None:
    torch.manual_seed(0)
    model = TinyBN()
    model.train()
    model.net[3].eval()  # a mixed state must come back exactly as it was
    modes = [m.training for m in model.modules()]
    stats = model.net[1].running_mean.clone(), model.net[1].running_var.clone()
    x = torch.randint(0, 256, (3, 3, 12, 12), dtype=torch.uint8)
    kwargs = {"jsma": {"gamma": 0.05}, **GENERATORS}.get(name, {})
    make_attack(name, **kwargs)(model, x, target=None if name == "llcm" else 1)
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    torch.testing.assert_close((model.net[1].running_mean, model.net[1].running_var), stats)


@pytest.mark.parametrize("name", ["fgsm", "bim", "pgd", "mifgsm", "timifgsm"])
def test_targeted_attacks_reach_the_target(bondi, patches, name: str) -> None:
    with torch.no_grad():
        target = (bondi(patches.float()).argmax(1) + 1) % 10
    kwargs = {"eps": 16} if name == "fgsm" else {"eps": 8, "alpha": 1, "steps": 20}
    if name == "timifgsm":
        kwargs["kernel_size"] = 5  # white-box strength falls with the kernel width (15 fails here)
    adv, info = make_attack(name, **kwargs)(bondi, patches, target)
    with torch.no_grad():
        pred = bondi(adv.float()).argmax(1)
    assert info.targeted
    torch.testing.assert_close(info.success, pred == target)
    assert info.success.float().mean() >= 0.75
    if name != "fgsm":
        assert info.success.all()


def test_early_stop_freezes_samples_that_succeed(bondi, patches) -> None:
    with torch.no_grad():
        target = (bondi(patches.float()).argmax(1) + 1) % 10
    _, info = PGD(eps=8, alpha=1, steps=12, random_start=False)(bondi, patches, target)
    full, _ = PGD(eps=8, alpha=1, steps=12, random_start=False, early_stop=False)(
        bondi, patches, target
    )
    assert info.success.all() and (info.steps < 12).all()
    assert (info.linf <= (full.float() - patches.float()).flatten(1).abs().amax(1)).all()


def test_llcm_steps_toward_the_least_likely_class(bondi, patches) -> None:
    adv, info = LLCM(eps=4)(bondi, patches)
    with torch.no_grad():
        clean = bondi(patches.float())
        adv_logits = bondi(adv.float())
    torch.testing.assert_close(info.target, clean.argmin(1))
    assert not info.targeted
    ll = clean.argmin(1, keepdim=True)
    assert (adv_logits.log_softmax(1).gather(1, ll) > clean.log_softmax(1).gather(1, ll)).all()
    with pytest.raises(CamtraceError, match="least-likely"):
        LLCM()(bondi, patches, target=1)


def test_true_labels_option_uses_them(bondi, patches) -> None:
    with torch.no_grad():
        pred = bondi(patches.float()).argmax(1)
    wrong = (pred + 1) % 10  # claimed true labels the detector already misses: success at once
    _, info = make_attack("bim", eps=2, steps=3)(bondi, patches, labels=wrong)
    torch.testing.assert_close(info.labels, wrong)
    assert info.success.all() and (info.steps == 0).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_ti_kernel_is_depthwise(channels: int) -> None:
    k = gaussian_kernel(7, 1.5)
    assert torch.isclose(k.sum(), torch.tensor(1.0)) and torch.equal(k, k.T) and k.argmax() == 24
    g = torch.randn(2, channels, 10, 10)
    out = depthwise_smooth(g, k)
    for c in range(channels):
        alone = torch.nn.functional.conv2d(g[:, c : c + 1], k[None, None], padding=3)
        torch.testing.assert_close(out[:, c : c + 1], alone)


def test_ti_attack_on_a_one_channel_detector_leaves_the_class() -> None:
    torch.manual_seed(0)
    model = TinyBN(channels=1).eval()
    x = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    adv, info = TIMIFGSM(eps=32, alpha=4, steps=10, kernel_size=5)(model, x)
    assert (adv.float() - x.float()).abs().max() <= 32
    torch.testing.assert_close(info.success, predict(model, adv) != predict(model, x))
    assert info.success.all()


def test_jpeg_round_trip_quality_and_explicit_tables(tmp_path) -> None:
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (3, 4, 4, 3)), np.ones((1, 8, 8, 1))).astype(np.uint8)
    near = recompress(smooth, Jpeg(quality=100, subsampling="4:4:4"))
    assert near.dtype == np.uint8 and near.shape == smooth.shape
    assert np.abs(near.astype(int) - smooth).max() <= 3
    ones = Jpeg(qtables=((1,) * 64, (1,) * 64), subsampling="4:4:4")
    assert np.abs(recompress(smooth, ones).astype(int) - smooth).max() <= 3
    q75 = recompress(smooth, Jpeg(quality=75))
    path = tmp_path / "camera.jpg"
    Image.fromarray(smooth[0]).save(path, quality=75)
    from_file = Jpeg.from_file(path)
    assert len(from_file.qtables) == 2
    np.testing.assert_array_equal(recompress(smooth, from_file), q75)
    tensor = torch.from_numpy(smooth).permute(0, 3, 1, 2)
    np.testing.assert_array_equal(
        recompress(tensor, Jpeg(quality=75)).permute(0, 2, 3, 1).numpy(), q75
    )
    buf = io.BytesIO()
    Image.fromarray(smooth[0]).save(buf, "JPEG", quality=75)
    np.testing.assert_array_equal(q75[0], np.array(Image.open(buf)))
    gray = recompress(smooth[..., :1].copy(), Jpeg(quality=90))
    assert gray.shape == (3, 32, 32, 1)


def test_success_after_jpeg_flag(bondi) -> None:
    # smooth patches: JPEG barely changes them, so some perturbations can survive it
    g = torch.Generator().manual_seed(1)
    low = torch.nn.functional.interpolate(
        torch.rand(4, 3, 8, 8, generator=g) * 200 + 28, size=64, mode="bicubic"
    )
    patches = (
        (low + torch.randn(4, 3, 64, 64, generator=g) * 2).round().clamp(0, 255).to(torch.uint8)
    )
    jpeg = Jpeg(quality=90)
    with torch.no_grad():
        target = (bondi(patches.float()).argmax(1) + 1) % 10
    _, plain = PGD(eps=8, alpha=1, steps=20, random_start=False)(bondi, patches, target)
    adv, info = PGD(eps=8, alpha=1, steps=20, random_start=False, jpeg=jpeg)(bondi, patches, target)
    with torch.no_grad():
        on_uint8 = bondi(adv.float()).argmax(1) == target
        jpeg_logits = bondi(recompress(adv, jpeg).float())
        after_jpeg = jpeg_logits.argmax(1) == target
    torch.testing.assert_close(info.jpeg_success, after_jpeg)
    torch.testing.assert_close(info.jpeg_scores, jpeg_logits.softmax(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(info.success, on_uint8 & after_jpeg)
    assert plain.jpeg_success is None
    assert plain.success.all() and info.success.any()
    assert (info.steps >= plain.steps).all() and (info.steps > plain.steps).any()  # waits for JPEG


def test_pixel_eps_conventions_and_errors(bondi, patches) -> None:
    assert as_pixel_eps(4)[0] == 4 and "pixel units" in as_pixel_eps(4)[1]
    assert as_pixel_eps(1)[0] == 1  # Zhao's smallest eps is one grey level, not the whole range
    value, how = as_pixel_eps(8 / 255)
    assert value == pytest.approx(8) and "[0, 1]" in how
    with pytest.raises(CamtraceError):
        as_pixel_eps(0)
    with pytest.raises(CamtraceError, match="unknown attack"):
        make_attack("cw")
    with pytest.raises(CamtraceError, match="no parameter"):
        make_attack("fgsm", steps=3)
    with pytest.raises(CamtraceError, match="norm"):
        make_attack("pgd", norm="l1")
    with pytest.raises(CamtraceError, match="eps"):
        make_attack("bim", eps=-1)
    with pytest.raises(CamtraceError, match="bad parameter value"):
        make_attack("pgd", eps="four")
    with pytest.raises(CamtraceError, match="uint8"):
        make_attack("fgsm")(bondi, patches.float())
    with pytest.raises(CamtraceError, match="outside 0-9"):
        make_attack("fgsm")(bondi, patches, target=12)
    with pytest.raises(CamtraceError, match="quality"):
        make_attack("fgsm", jpeg=0)
    assert set(ATTACKS) == {*GRADIENT, "jsma", "square", "noise", "noise-luma", *GENERATORS}


def test_l2_rounding_keeps_the_ball_and_spends_the_budget() -> None:
    gen = torch.Generator().manual_seed(0)
    delta = torch.randn(6, 3, 32, 32, generator=gen)
    eps = 40.5
    on_sphere = delta * eps / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    r = round_in_l2_ball(on_sphere, eps)
    norms = r.flatten(1).norm(dim=1)
    assert torch.equal(r, r.round()) and (norms <= eps + 1e-4).all()
    # truncating whole samples (the naive fix) keeps well under 80% of eps here
    assert (norms >= 0.99 * eps).all()
    assert (on_sphere.trunc().flatten(1).norm(dim=1) < 0.8 * eps).all()
    inside = on_sphere * 0.5  # rounding to nearest already fits: nothing is truncated
    torch.testing.assert_close(round_in_l2_ball(inside, eps), inside.round())


def predict(detector: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return detector(images.float()).argmax(1)


@pytest.fixture(scope="module")
def smooth_patches() -> torch.Tensor:
    """Photo-like patches (smooth content, mild noise): JPEG keeps most of them intact."""
    g = torch.Generator().manual_seed(1)
    x = F.interpolate(torch.rand(16, 3, 8, 8, generator=g), size=64, mode="bilinear") * 180 + 40
    return (x + 4 * torch.randn(x.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("jpeg", [Jpeg(quality=75), Jpeg(qtables=(tuple(range(2, 66)),) * 2)])
def test_differentiable_jpeg_tracks_libjpeg_and_passes_a_gradient(smooth_patches, jpeg) -> None:
    x = smooth_patches.float().requires_grad_(True)
    proxy = jpeg.differentiable(x)
    real = jpeg(smooth_patches).float()
    assert (proxy - real).abs().mean() < 3  # grey levels; JPEG itself moves them by ~5
    assert (real - x).abs().mean() > 3
    (grad,) = torch.autograd.grad(proxy.sum(), x)
    assert grad.abs().sum() > 0


def test_through_jpeg_needs_a_jpeg() -> None:
    with pytest.raises(CamtraceError, match="give jpeg="):
        PGD(4, through_jpeg=True)


THROUGH_JPEG = {  # small cases (5 steps, 16 patches) where the EOT gradient should help
    "fgsm": {"eps": 8},
    "llcm": {"eps": 8},
    "bim": {"eps": 4, "alpha": 1, "steps": 5},
    "pgd": {"eps": 4, "alpha": 1, "steps": 5, "seed": 0},
    "pgd-l2": {"eps": 256, "alpha": 64, "steps": 5, "seed": 0},
    "mifgsm": {"eps": 4, "alpha": 1, "steps": 5},
    "timifgsm": {"eps": 4, "alpha": 1, "steps": 5, "kernel_size": 5},
}


@pytest.mark.parametrize("name", GRADIENT)
def test_every_gradient_attack_survives_jpeg_better_through_it(
    bondi, smooth_patches, name: str
) -> None:
    """Measured on AVX512-BF16 (fp32), of 16 patches after JPEG 75: fgsm 9 -> 12, bim 2 -> 6,
    pgd 1 -> 4, pgd-l2 2 -> 5, mifgsm 2 -> 6, timifgsm 6 -> 10; a margin of 2 patches."""
    target = None if name == "llcm" else (predict(bondi, smooth_patches) + 1) % 10
    outcomes = []
    for through in (False, True):
        attack = make_attack(
            name, jpeg=75, through_jpeg=through, precision="fp32", **THROUGH_JPEG[name]
        )
        adv, info = attack(bondi, smooth_patches, target)
        after = bondi(recompress(adv, attack.options.jpeg).float()).detach()
        outcomes.append((info, after))
    if name == "llcm":
        # one step toward the least-likely class, success = any misclassification: hardly more
        # leave their class (3 -> 3 or 4 of 16), but the least-likely class keeps more
        # log-probability after JPEG: measured +0.075 nats on average (fp32; bf16 similar), on
        # 16 of 16 patches (the smallest gain +0.009)
        kept = [after.log_softmax(1).gather(1, i.target[:, None]) for i, after in outcomes]
        gain = (kept[1] - kept[0]).flatten()
        assert gain.mean() > 0.03 and (gain > 0).sum() >= 14
    else:
        plain, through = (int(info.jpeg_success.sum()) for info, _ in outcomes)
        assert through >= plain + 2


def test_options_are_one_validated_value_and_with_options_copies() -> None:
    pgd = make_attack("pgd", eps=4, steps=2, jpeg=90, batch_size=2)
    assert pgd.options == AttackOptions(jpeg=Jpeg(quality=90), batch_size=2)
    other = pgd.with_options(jpeg=None, seed=3)
    assert other.options.jpeg is None and other.options.seed == 3 and other.eps == 4
    assert pgd.options.jpeg == Jpeg(quality=90) and pgd.options.seed is None  # unchanged
    assert PGD(4, 1, 2, options=pgd.options).options == pgd.options
    bad = {
        "precision='fp16': use auto or fp32 or bf16": {"precision": "fp16"},
        "batch_size=0: use an integer >= 1": {"batch_size": 0},
        "early_stop='no': use true or false": {"early_stop": "no"},
        "give jpeg=": {"jpeg": None, "through_jpeg": True},
        "no option step; the options are: quantize,": {"step": 3},
    }
    for message, change in bad.items():
        with pytest.raises(CamtraceError, match=message.replace("(", r"\(")):
            pgd.with_options(**change)
    with pytest.raises(
        CamtraceError, match="parameters: eps, loss; options: quantize, jpeg, through"
    ):
        make_attack("fgsm", steps=3)
    with pytest.raises(CamtraceError, match="early_stop does not apply"):
        FGSM(early_stop=False)
    with pytest.raises(CamtraceError, match="through_jpeg does not apply"):
        JSMA(jpeg=90, through_jpeg=True)


def test_auto_precision_keeps_fp32_where_bf16_has_no_fast_path(monkeypatch) -> None:
    x = torch.zeros(2, 3, 12, 12)
    model = TinyBN()
    assert resolve_precision(AttackOptions(quantize=False), model, x) == "fp32"
    assert resolve_precision(AttackOptions(), model, x.double()) == "fp32"
    assert resolve_precision(AttackOptions(precision="bf16"), model, x) == "bf16"

    def no_probe(*_):
        raise AssertionError("an AVX2-only processor must not time bf16")

    monkeypatch.setattr("camtrace.attacks.precision.fast_bf16", lambda device: False)
    monkeypatch.setattr("camtrace.attacks.precision.bf16_speedup", no_probe)
    assert resolve_precision(AttackOptions(), model, x) == "fp32"


def test_auto_precision_follows_the_detectors_spec_as_training_does(monkeypatch) -> None:
    """A detector whose ModelSpec keeps fp32 (mixed_precision False) is attacked in fp32
    even on a processor with fast bf16; one whose spec allows bf16 is timed."""
    from camtrace.models import build

    monkeypatch.setattr("camtrace.attacks.precision.fast_bf16", lambda device: True)
    monkeypatch.setattr("camtrace.attacks.precision.bf16_speedup", lambda *_: 2.0)
    x = torch.zeros(2, 3, 64, 64)
    kept = build("bondi2017", ["A_1", "B_2"], patch_size=64)
    assert not kept.spec.mixed_precision
    assert resolve_precision(AttackOptions(), kept, x) == "fp32"
    allowed = build("tuama2016", ["A_1", "B_2"], patch_size=64)
    assert allowed.spec.mixed_precision
    assert resolve_precision(AttackOptions(), allowed, x) == "bf16"


def test_bf16_gradient_passes_are_judged_in_fp32_on_the_uint8_output() -> None:
    torch.manual_seed(0)
    model = TinyBN().eval()
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    target = (predict(model, x) + 1) % 4
    rates = {}
    for precision in ("fp32", "bf16"):
        attack = make_attack("pgd", eps=16, alpha=2, steps=10, seed=0, precision=precision)
        adv, info = attack(model, x, target)
        torch.testing.assert_close(info.success, predict(model, adv) == target)
        rates[precision] = int(info.success.sum())
    assert rates["bf16"] >= rates["fp32"] - 1 and rates["fp32"] >= 6
