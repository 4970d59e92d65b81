"""Square Attack (Andriushchenko et al. 2020): raises success over a small query budget on a
toy model, never leaves the eps ball, returns uint8 and asks for no gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camtrace.attacks import Square, make_attack
from camtrace.attacks.square import HALVING
from camtrace.errors import CamtraceError

pytestmark = pytest.mark.usefixtures("one_thread")


class LocalCNN(nn.Module):
    """A small CNN on 16x16 patches whose logits depend on local pixel patterns."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(32, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 127.5) / 64)


class NoGradient(nn.Module):
    """Fails the test if anything asks for a gradient through it."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert not torch.is_grad_enabled() or not x.requires_grad, "square asked for a gradient"
        return self.detector(x)


@pytest.fixture(scope="module")
def toy() -> tuple[nn.Module, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return LocalCNN().eval(), torch.randint(
        0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=gen
    )


def test_success_grows_with_the_query_budget(toy) -> None:
    model, x = toy
    rates = [
        make_attack("square", eps=8, queries=q, seed=0)(model, x)[1].success.float().mean().item()
        for q in (1, 300)
    ]
    assert rates[1] > rates[0] + 0.25  # the search, not the stripes, makes most successes


def test_stays_in_the_eps_ball_on_uint8_and_counts_success_on_it(toy) -> None:
    model, x = toy
    eps = 5.5  # non-integer: the values move by floor(eps)
    adv, info = Square(eps=eps, queries=200, seed=0)(NoGradient(model), x)
    assert adv.dtype == torch.uint8 and adv.shape == x.shape
    delta = adv.int() - x.int()
    assert delta.abs().max() <= 5
    with torch.no_grad():
        pred_adv, pred = model(adv.float()).argmax(1), model(x.float()).argmax(1)
    assert torch.equal(info.success, pred_adv != pred)
    assert (info.steps >= 1).all() and (info.steps <= 200).all()
    assert (info.steps[info.success] < 200).any()  # early stop: successes stop querying


def test_targeted_moves_toward_the_target(toy) -> None:
    model, x = toy
    with torch.no_grad():
        target = (model(x.float()).argmax(1) + 1) % 3
    _, info = make_attack("square", eps=16, queries=300, seed=0)(model, x, target)
    assert info.targeted and info.success.float().mean() >= 0.5


def test_seeded_runs_repeat_and_schedule_halves_p() -> None:
    attack = Square(queries=10_000, p_init=0.4)
    assert attack.p_at(1) == 0.4 and attack.p_at(HALVING[0] + 1) == 0.2
    assert attack.p_at(9_999) == 0.4 / 2 ** len(HALVING)
    assert Square(queries=100, p_init=0.4).p_at(99) == attack.p_at(9_900)
    model = LocalCNN().eval()
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    a, _ = Square(eps=4, queries=30, seed=3)(model, x)
    b, _ = Square(eps=4, queries=30, seed=3)(model, x)
    assert torch.equal(a, b)


def test_bad_parameters_fail_in_one_line() -> None:
    with pytest.raises(CamtraceError, match="queries"):
        make_attack("square", queries=0)
    with pytest.raises(CamtraceError, match="p_init"):
        make_attack("square", p_init=2)
    with pytest.raises(CamtraceError, match="precision"):
        make_attack("square", precision="bf16")
