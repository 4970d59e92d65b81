"""The losses of the iterative loop: exact values of Carlini & Wagner's margin and Croce &
Hein's DLR on hand-made logits, the logits their gradients push, a typo's one-line error, and
a detector whose soft-max saturates: PGD on the cross-entropy cannot move it, PGD on either
margin loss fools it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camtrace.attacks import PGD, make_attack
from camtrace.attacks.losses import LOSSES, cross_entropy_loss, cw_loss, dlr_loss
from camtrace.errors import CamtraceError

pytestmark = pytest.mark.usefixtures("one_thread")

# sorted descending, row 0: 3, 1, 0, -2; row 1: 5, 4, 2, -1
LOGITS = torch.tensor([[3.0, 1.0, 0.0, -2.0], [2.0, -1.0, 5.0, 4.0]])


@pytest.mark.parametrize(
    ("loss", "labels", "target", "expected"),
    [
        # max_{j != y} z_j - z_y: row 0 y = 0 (on top), row 1 y = 0 (not on top)
        (cw_loss, [0, 0], None, [1 - 3, 5 - 2]),
        # z_t - max_{j != t} z_j
        (cw_loss, [0, 0], [2, 3], [0 - 3, 4 - 5]),
        # -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)
        (dlr_loss, [0, 0], None, [-(3 - 1) / (3 - 0), -(2 - 5) / (5 - 2)]),
        # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
        (dlr_loss, [0, 0], [2, 3], [-(3 - 0) / (3 - (0 - 2) / 2), -(2 - 4) / (5 - (2 - 1) / 2)]),
    ],
)
def test_margin_losses_on_hand_made_logits(loss, labels, target, expected) -> None:
    labels = torch.tensor(labels)
    target = None if target is None else torch.tensor(target)
    for i in range(2):  # each sample alone, then their sum (fp32 rounding of a few ops)
        one = loss(
            LOGITS[i : i + 1], labels[i : i + 1], None if target is None else target[i : i + 1]
        )
        torch.testing.assert_close(one, torch.tensor(float(expected[i])))
    torch.testing.assert_close(loss(LOGITS, labels, target), torch.tensor(float(sum(expected))))


def test_dlr_is_invariant_to_shift_and_scale_of_the_logits() -> None:
    labels, target = torch.tensor([0, 0]), torch.tensor([2, 3])
    for t in (None, target):
        torch.testing.assert_close(
            dlr_loss(7 * LOGITS - 100, labels, t), dlr_loss(LOGITS, labels, t)
        )


def test_gradients_push_the_right_logits() -> None:
    """Ascending: untargeted, the label's logit goes down and the best other's up; targeted,
    the target's goes up (and CW's exactly +-1 on the two logits of its margin)."""
    labels, target = torch.tensor([0, 0]), torch.tensor([2, 3])
    z = LOGITS.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(cw_loss(z, labels, None), z)
    assert g.tolist() == [[-1, 1, 0, 0], [-1, 0, 1, 0]]
    (g,) = torch.autograd.grad(cw_loss(z, labels, target), z)
    assert g.tolist() == [[-1, 0, 1, 0], [0, 0, -1, 1]]
    (g,) = torch.autograd.grad(dlr_loss(z, labels, None), z)
    assert g[0, 0] < 0 and g[0, 1] > 0  # row 1's label is z_pi3: its DLR is 1 whatever z
    (g,) = torch.autograd.grad(dlr_loss(z, labels, target), z)
    assert (g[:, 0] < 0).all() and g[0, 2] > 0 and g[1, 3] > 0


def test_dlr_needs_enough_classes() -> None:
    with pytest.raises(CamtraceError, match="untargeted needs >= 3 classes.*has 2; use loss 'cw'"):
        dlr_loss(LOGITS[:, :2], torch.tensor([0, 0]), None)
    with pytest.raises(CamtraceError, match="targeted needs >= 4 classes"):
        dlr_loss(LOGITS[:, :3], torch.tensor([0, 0]), torch.tensor([1, 2]))


def test_a_loss_typo_is_a_one_line_error() -> None:
    assert set(LOSSES) == {"ce", "cw", "dlr"}
    for build in (lambda: PGD(loss="dl"), lambda: make_attack("bim", loss="CW")):
        with pytest.raises(CamtraceError, match="loss=.* unknown; use ce, cw, dlr") as err:
            build()
        assert "\n" not in str(err.value)
    for name in ("fgsm", "llcm", "bim", "pgd", "pgd-l2", "mifgsm", "timifgsm"):
        assert make_attack(name, loss="cw").loss_name == "cw"


class Saturated(nn.Module):
    """Logits 1e4 x the mean grey level of each channel (class c: channel c is brightest): a
    margin of one grey level is 1e4 in logits, so the fp32 soft-max is exactly one-hot and
    the cross-entropy's gradient exactly zero."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.classes = [f"model_{c}" for c in range(channels)]
        self.register_buffer("scale", torch.tensor(1e4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x.mean((2, 3))


def flat_patches(n: int = 12, channels: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat patches whose own channel is brighter than every other by 2-10 grey levels."""
    g = torch.Generator().manual_seed(0)
    levels = torch.randint(80, 160, (n, channels), generator=g)
    labels = torch.arange(n) % channels
    margin = torch.randint(2, 11, (n,), generator=g)
    levels[torch.arange(n), labels] = 0
    levels[torch.arange(n), labels] = levels.amax(1) + margin
    return levels[:, :, None, None].expand(n, channels, 16, 16).to(torch.uint8), labels


def test_margin_losses_fool_a_detector_whose_cross_entropy_saturates() -> None:
    """An Linf step of alpha lowers the own channel and raises another by alpha: eps 16
    closes any margin of up to 32 grey levels, eps 64 any gap to a target (<= 90 here), if
    the gradient says where to go. (Targeted, the cross-entropy's gradient e_t - e_y does
    not vanish: only the untargeted one saturates.)"""
    detector, (x, labels) = Saturated(4), flat_patches()
    z = x.float().requires_grad_(True)
    (g,) = torch.autograd.grad(cross_entropy_loss(detector(z), labels, None), z)
    assert (g == 0).all()  # the saturated soft-max: nothing to follow

    def pgd(loss: str, eps: float, target: torch.Tensor | None = None):
        attack = PGD(eps, eps / 4, 20, random_start=False, loss=loss, precision="fp32")
        return attack(detector, x, target=target)

    adv, info = pgd("ce", 16)
    assert not info.success.any() and torch.equal(adv, x)
    for loss in ("cw", "dlr"):
        adv, info = pgd(loss, 16)
        assert info.success.all(), loss
        assert (adv.int() - x.int()).abs().max() <= 16
        assert (detector(adv.float()).argmax(1) != labels).all()
        adv, info = pgd(loss, 64, (labels + 1) % 4)
        assert info.success.all() and info.targeted, loss
        assert (detector(adv.float()).argmax(1) == (labels + 1) % 4).all()
