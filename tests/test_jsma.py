"""Scalable JSMA: success-rate parity with torchattacks' dense JSMA and ART's, the pair search,
the L0 budget, and a 256x256 patch."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torchattacks
from torch import nn

from camtrace.attacks import JSMA
from camtrace.attacks.interop import UnitRangeDetector
from camtrace.attacks.jsma import saliency_pair

CLASSES = 10


pytestmark = pytest.mark.usefixtures("one_thread")


class Tiny(nn.Module):
    """A small CNN on [0, 255] pixels (random weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(5),
            nn.Flatten(),
            nn.Linear(400, CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 127.5) / 64)


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return Tiny().eval()


@pytest.fixture(scope="module")
def case(tiny) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (24, 3, 12, 12), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        pred = tiny(x.float()).argmax(1)
    target = (pred + 1 + torch.randint(0, CLASSES - 1, (24,), generator=g)) % CLASSES
    return x, target


def reaches(model: nn.Module, adv_u8: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(adv_u8.float()).argmax(1) == target


def test_success_parity_with_torchattacks_dense_jsma(tiny, case) -> None:
    x, target = case[0][:16], case[1][:16]
    ref = torchattacks.JSMA(UnitRangeDetector(tiny), theta=1.0, gamma=0.02)
    ref.set_mode_targeted_by_label(quiet=True)
    ref_adv = (ref(x.float() / 255, target) * 255).round().to(torch.uint8)
    ref_rate = reaches(tiny, ref_adv, target).float().mean()
    assert 0 < ref_rate < 1  # a budget tight enough to tell attacks apart
    _, info_p = JSMA(theta=255, gamma=0.02, k=64, step_aware=False)(tiny, x, target)
    adv, info = JSMA(theta=255, gamma=0.02, k=64)(tiny, x, target)
    torch.testing.assert_close(info.success, reaches(tiny, adv, target))
    assert info_p.success.float().mean() >= ref_rate  # same map, top-k pair search
    assert info.success.float().mean() >= ref_rate


def test_success_parity_with_art_saliency_map_method(tiny, case) -> None:
    pytest.importorskip("art")  # adversarial-robustness-toolbox, a dev extra
    from art.attacks.evasion import SaliencyMapMethod
    from art.estimators.classification import PyTorchClassifier

    x, target = case
    classifier = PyTorchClassifier(
        tiny,
        loss=nn.CrossEntropyLoss(),
        input_shape=(3, 12, 12),
        nb_classes=CLASSES,
        clip_values=(0, 255),
    )
    ref = SaliencyMapMethod(classifier, theta=255, gamma=0.02, batch_size=len(x), verbose=False)
    ref_adv = (
        torch.from_numpy(ref.generate(x.float().numpy(), y=target.numpy())).round().to(torch.uint8)
    )
    ref_rate = reaches(tiny, ref_adv, target).float().mean()
    assert 0 < ref_rate < 1
    _, info = JSMA(theta=255, gamma=0.02)(tiny, x, target)
    assert info.success.float().mean() >= ref_rate


def test_budget_direction_and_single_use_of_each_value(tiny, case) -> None:
    x, target = case
    n = x[0].numel()
    adv, info = JSMA(theta=255, gamma=0.05)(tiny, x, target)
    changed = adv != x
    assert (info.l0 <= 2 * math.ceil(0.05 * n / 2)).all()
    assert (adv[changed] == 255).all() and (adv >= x).all()  # increasing mode saturates
    assert (info.l0 <= 2 * info.steps).all()  # two values per iteration, each at most once
    down, info_down = JSMA(theta=-255, gamma=0.05)(tiny, x, target)
    assert (down <= x).all() and (down[down != x] == 0).all() and info_down.success.any()


def test_pair_search_equals_dense_search_when_k_covers_all() -> None:
    g = torch.Generator().manual_seed(3)
    alpha, beta = torch.randn(5, 12, generator=g), torch.randn(5, 12, generator=g)
    domain = torch.rand(5, 12, generator=g) > 0.2
    p, q = saliency_pair(alpha, beta, domain, k=12)
    for s in range(5):
        best, arg = -math.inf, None
        for i, j in itertools.combinations(domain[s].nonzero().flatten().tolist(), 2):
            a, b = alpha[s, i] + alpha[s, j], beta[s, i] + beta[s, j]
            if a > 0 and b < 0 and a * -b > best:
                best, arg = a * -b, {i, j}
        assert {p[s].item(), q[s].item()} == arg


def test_untargeted_use_aims_at_the_runner_up(tiny, case) -> None:
    x, _ = case
    with torch.no_grad():
        clean = tiny(x.float())
    adv, info = JSMA(gamma=0.05)(tiny, x)
    torch.testing.assert_close(info.target, clean.topk(2, dim=1).indices[:, 1])
    assert not info.targeted
    torch.testing.assert_close(info.success, reaches(tiny, adv, clean.argmax(1)).logical_not())


def test_a_256_pixel_patch_fits_and_runs() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 5, stride=4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    x = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8)
    with torch.no_grad():
        target = (model(x.float()).argmax(1) + 1) % 3
    adv, info = JSMA(gamma=1e-4, k=64)(model, x, target=target)
    assert adv.shape == x.shape and (info.l0 <= 2 * math.ceil(1e-4 * x[0].numel() / 2)).all()
    with torch.no_grad():  # the few changed values raise the target's logit margin
        margin = [
            z.gather(1, target[:, None]) - z.amax(1, keepdim=True)
            for z in map(model, (x.float(), adv.float()))
        ]
    assert (info.l0 > 0).all() and (margin[1] > margin[0]).all()


class Linear(nn.Module):
    """Z = W x / 255 + b on a 3x4x4 image: values 0-23 raise the target (class 1) by 1 and a
    third class (2) by 3 while lowering 7 others by 1 each; values 24-47 raise the target by 1
    and lower the winner (class 0) by 1."""

    def __init__(self) -> None:
        super().__init__()
        w = torch.zeros(CLASSES, 48)
        w[1] = 1
        w[2, :24], w[3:, :24], w[0, 24:] = 3, -1, -1
        self.w, self.b = w, torch.tensor([3.0, 0, 1, 0, 0, 0, 0, 0, 0, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) / 255 @ self.w.T + self.b


def test_other_max_reaches_the_target_where_the_sum_lets_a_third_class_win() -> None:
    x, target = torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.tensor([1])
    _, info_sum = JSMA(gamma=0.5, other="sum")(Linear(), x, target)
    adv, info_max = JSMA(gamma=0.5, other="max")(Linear(), x, target)
    # the sum prefers values 0-23 (beta_pq = 3 - 7 per value), so class 2 overtakes at once
    assert not info_sum.success and info_sum.steps == 12
    # against the winner, one pair of values 24-47 is enough: t = 2, winner 1, class 2 at 1
    assert info_max.success and info_max.steps == 1
    torch.testing.assert_close(Linear()(adv.float()).argmax(1), target)
    assert (adv.flatten()[:24] == 0).all() and (adv.flatten()[24:] == 255).sum() == 2
