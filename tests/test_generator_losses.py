"""The generator losses on hand-made values (issue 23): MISLGAN's L_G = alpha L_p + beta L_c
+ gamma L_a (Chen Eq. 2-5) and its straight-through rounding, each checked against the
formula computed here by hand, never against the code's own output."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from camtrace.attacks.generative import spoc
from camtrace.attacks.generative.methods import get_method
from camtrace.attacks.generative.mislgan import adversarial_loss, perceptual_loss
from camtrace.attacks.generative.training import (
    GeneratorConfig,
    _Run,
    classification_loss,
    ste_round,
)


class FixedLogits(nn.Module):
    """A classifier (or discriminator) that gives the same logits to every input, plus a
    zero-weighted dependence on the input and on a parameter, so gradients flow and an
    optimiser has something to hold (its updates are zero)."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)
        self.unused = nn.Parameter(torch.zeros(()))
        self.classes = [f"M_{i}" for i in range(len(logits))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tie = 0 * (x.mean(dim=(1, 2, 3))[:, None] + self.unused)
        out = self.logits.expand(len(x), -1) + tie
        return out.squeeze(1) if out.shape[1] == 1 else out

    def project_constraints(self) -> None:
        """Nothing to re-impose (Chen's D re-projects its constrained layer)."""


class Shift(nn.Module):
    """A 'generator' that adds a fixed field: G(I) = I + delta."""

    def __init__(self, delta: torch.Tensor) -> None:
        super().__init__()
        self.delta = nn.Parameter(delta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.delta


def test_perceptual_loss_is_the_mean_absolute_difference_in_grey_levels() -> None:
    x = torch.zeros(1, 1, 2, 2)
    fake = torch.tensor([[[[1.0, -3.0], [0.0, 2.0]]]])
    assert perceptual_loss(fake, x).item() == pytest.approx((1 + 3 + 0 + 2) / 4)


@pytest.mark.parametrize("logit", [0.0, 2.0, -1.5])
def test_adversarial_loss_is_log_of_one_minus_d(logit: float) -> None:
    """Eq. 5: L_a = log(1 - D(G(I))), D = sigmoid(logit)."""
    d = FixedLogits([logit])
    expected = math.log(1 - 1 / (1 + math.exp(-logit)))
    real, fake = torch.zeros(2, 3, 4, 4), torch.zeros(3, 3, 4, 4)
    assert adversarial_loss(d, real, fake).item() == pytest.approx(expected, rel=1e-6)


class NormalisedMean(nn.Module):
    """A discriminator with batch norm: logit = w * BN(x) averaged over the pixels."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.norm, self.w = nn.BatchNorm2d(3, affine=False), w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w * self.norm(x).mean(dim=(1, 2, 3))


def test_adversarial_loss_reads_d_as_it_was_trained_on_the_mixed_batch() -> None:
    """Originals at 200 grey levels, generated patches at 100: on the mixed batch D's batch
    norm maps them to +1 and -1, so D(G(I)) = sigmoid(-w) and L_a = log(1 - sigmoid(-w)).
    Shown the generated patches alone, batch norm would map them to 0 and give log(1/2)."""
    d = NormalisedMean(w=5.0).train()
    real, fake = torch.full((4, 3, 2, 2), 200.0), torch.full((4, 3, 2, 2), 100.0)
    expected = math.log(1 - 1 / (1 + math.exp(5.0)))
    assert adversarial_loss(d, real, fake).item() == pytest.approx(expected, rel=1e-3)


def test_classification_loss_is_the_cross_entropy_toward_the_target() -> None:
    """Eq. 4 with logits (2, 0, -1) and target 1: log(e^2 + e^0 + e^-1) - 0; an ensemble
    averages its members' cross-entropies."""
    one = FixedLogits([2.0, 0.0, -1.0])
    expected = math.log(math.exp(2) + 1 + math.exp(-1))
    x = torch.zeros(4, 3, 2, 2)
    assert classification_loss([one], x, 1).item() == pytest.approx(expected, rel=1e-6)
    other = FixedLogits([0.0, 0.0, 0.0])
    both = (expected + math.log(3)) / 2
    assert classification_loss([one, other], x, 1).item() == pytest.approx(both, rel=1e-6)


def test_ste_round_rounds_forward_and_passes_the_gradient_through() -> None:
    x = torch.tensor([0.4, 1.6, 254.5, 3.0], requires_grad=True)
    y = ste_round(x)
    assert y.tolist() == [0.0, 2.0, 254.0, 3.0]  # round half to even, as torch.round
    (y * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("method", ["mislgan", "advcamid"])
def test_generator_step_weighs_chens_three_terms(method: str) -> None:
    """One training step of L_G = alpha L_p + beta L_c + gamma L_a (Adv-Cam-Id: gamma 0),
    on the generator's output rounded to the 8-bit grid: G adds 0.4 and 1.6 grey levels, so
    the rounded output differs from I by 0 and 2 (L_p = 1), the detector's logits (2, 0, -1)
    toward target 1 give L_c = log(e^2 + 1 + e^-1), and D's logit 0.5 gives
    L_a = log(1 - sigmoid(0.5))."""
    alpha, beta, gamma = 2.0, 3.0, 5.0
    x = torch.full((2, 3, 1, 2), 100.0)
    delta = torch.tensor([0.4, 1.6]).reshape(1, 1, 1, 2).expand(1, 3, 1, 2).clone()
    config = GeneratorConfig(batch_size=2, alpha=alpha, beta=beta, gamma=gamma)
    detector = FixedLogits([2.0, 0.0, -1.0])
    card = {"method": method, "target": "M_1", "patch_size": 64}
    run = _Run(get_method(method), config, [detector], 1, x, x, card, seed=0)
    run.modules["generator"] = Shift(delta)
    if method == "mislgan":
        run.modules["discriminator"] = FixedLogits([0.5])
    run.adam(1e-4, (0.5, 0.999))
    log = run.step(x)
    l_p = (0 + 2) / 2
    l_c = math.log(math.exp(2) + 1 + math.exp(-1))
    l_a = math.log(1 - 1 / (1 + math.exp(-0.5)))
    expected = alpha * l_p + beta * l_c + (gamma * l_a if method == "mislgan" else 0.0)
    assert log["l1"] == pytest.approx(l_p) and log["ce"] == pytest.approx(l_c, rel=1e-6)
    assert log["generator"] == pytest.approx(expected, rel=1e-6)
    assert ("adversarial" in log) == (method == "mislgan")


def test_warm_start_steps_on_the_l1_term_alone_at_its_own_rate() -> None:
    """The named warm start (not Chen's): its iterations update G on L_p alone (no
    classifier, no discriminator) at ``warm_lr``; the next iteration is Chen's L_G at lr."""
    x = torch.full((2, 3, 1, 2), 100.0)
    delta = torch.tensor([0.4, 1.6]).reshape(1, 1, 1, 2).expand(1, 3, 1, 2).clone()
    config = GeneratorConfig(batch_size=2, alpha=2.0, warm_start=1, warm_lr=1e-3, lr=1e-4)
    card = {"method": "mislgan", "target": "M_1", "patch_size": 64}
    run = _Run(get_method("mislgan"), config, [FixedLogits([2.0, 0.0, -1.0])], 1, x, x, card, 0)
    run.modules["generator"] = Shift(delta)
    run.modules["discriminator"] = FixedLogits([0.5])
    run.adam(1e-4, (0.5, 0.999))
    warm = run.step(x)
    assert warm["generator"] == pytest.approx((0 + 2) / 2) and "ce" not in warm
    assert "discriminator" not in warm
    assert run.optimizers["generator"].param_groups[0]["lr"] == 1e-3
    run.iteration = 1
    full = run.step(x)
    assert "ce" in full and "discriminator" in full
    assert run.optimizers["generator"].param_groups[0]["lr"] == 1e-4


def test_warm_start_needs_an_l1_term_and_fewer_iterations_than_the_run() -> None:
    from pydantic import ValidationError

    from camtrace.errors import CamtraceError

    with pytest.raises(ValidationError, match="must be below iterations"):
        GeneratorConfig(iterations=10, warm_start=10)
    x = torch.zeros((2, 3, 4, 4))
    card = {"method": "gap", "target": "M_1", "patch_size": 4}
    with pytest.raises(CamtraceError, match="no L1 term"):
        _Run(
            get_method("gap"),
            GeneratorConfig(warm_start=5),
            [FixedLogits([0.0, 1.0])],
            1,
            x,
            x,
            card,
            0,
        )


# -- SpoC (Cozzolino et al. 2021, Eq. 1-6) ---------------------------------------------------


def test_spoc_reconstruction_is_the_mean_absolute_difference_on_the_unit_scale() -> None:
    x = torch.full((1, 1, 1, 4), 100.0)
    spoof = x + torch.tensor([25.5, -25.5, 0.0, 51.0])  # 0.2, 0.2, 0, 0.4 on [-1, 1]
    assert spoc.reconstruction_loss(spoof, x).item() == pytest.approx(0.2, rel=1e-6)


def test_spoc_distance_loss_is_the_hinge_of_eq_3() -> None:
    """||E(G(x)) - e_M||_1 per dimension: (0.1, 0.3) for two spoofs; d_ref 0.15, m 0.01:
    hinge (0, 0.16), mean 0.08."""
    e_m = torch.zeros(4)
    spoofs = torch.tensor([[0.1, -0.1, 0.2, 0.0], [0.3, 0.3, -0.3, 0.3]])
    loss = spoc.distance_loss(spoofs, e_m, torch.tensor(0.15), margin=0.01)
    assert loss.item() == pytest.approx((0.0 + (0.3 - 0.15 + 0.01)) / 2, rel=1e-6)


def test_spoc_feature_matching_sums_the_blocks_batch_mean_differences() -> None:
    """Block 1: channel means (1, 2) vs (1.5, 2) -> 0.25; block 2: (0,) vs (3,) -> 3."""
    real = [torch.tensor([1.0, 2.0]).reshape(1, 2, 1, 1), torch.zeros(2, 1, 2, 2)]
    spoof = [torch.tensor([1.5, 2.0]).reshape(1, 2, 1, 1), torch.full((2, 1, 2, 2), 3.0)]
    assert spoc.feature_matching_loss(real, spoof).item() == pytest.approx(3.25, rel=1e-6)


@pytest.mark.parametrize("logit", [0.0, 1.0, -2.0])
def test_spoc_adversarial_and_discriminator_losses(logit: float) -> None:
    """Eq. 6: -log D(G(x)); Eq. 5: -log D(z) - (log(1 - D(G(x))) + log(1 - D(x))) / 2."""
    sig = 1 / (1 + math.exp(-logit))
    maps = torch.full((2, 1, 3, 3), logit)
    assert spoc.adversarial_loss(maps).item() == pytest.approx(-math.log(sig), rel=1e-6)
    real, spoofed, inputs = maps, maps + 1, maps - 1
    s1, s0 = 1 / (1 + math.exp(-(logit + 1))), 1 / (1 + math.exp(-(logit - 1)))
    expected = -math.log(sig) - 0.5 * (math.log(1 - s1) + math.log(1 - s0))
    got = spoc.discriminator_loss(real, spoofed, inputs).item()
    assert got == pytest.approx(expected, rel=1e-6)


class FixedEmbedder(nn.Module):
    """Embeddings and block maps fixed by hand (tied to the input at weight 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.maps = [torch.tensor([2.0, 4.0]).reshape(1, 2, 1, 1), torch.full((1, 3, 2, 2), 0.5)]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        tie = 0 * x.mean()
        return [m.expand(len(x), -1, -1, -1) + tie for m in self.maps]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)[-1].amax(dim=(-2, -1))


class FixedPerceptual(nn.Module):
    source = "fixed"

    def forward(self, spoof: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return 7.0 + 0 * (spoof - x).mean()


def test_spoc_generator_step_weighs_the_five_terms() -> None:
    """L_G = lambda_rec L_REC + lambda_p L_PER + lambda_E (L_DST + lambda_f L_FM) + lambda_A
    L_ADV with every term fixed by hand. G adds 51.3 and 101.8 grey levels, 51 and 102 once
    rounded to the 8-bit grid: L_REC = (0.4 + 0.8) / 2 on the [-1, 1] scale. L_PER = 7. The
    embedding (0.5, 0.5, 0.5), e_M = 0, d_ref 0.2, m 0.01: L_DST = 0.31. The real and spoofed
    maps are the same: L_FM = 0. D's logit 1: L_ADV = -log sigmoid(1)."""
    from camtrace.attacks.generative.spoc_training import SpoCConfig, _SpoCRun

    lam = {"lambda_rec": 1.5, "lambda_e": 2.0, "lambda_a": 0.3, "lambda_p": 0.5, "lambda_f": 0.25}
    config = SpoCConfig(batch_size=2, margin=0.01, **lam)
    x = torch.full((2, 3, 1, 2), 100.0)
    embedder = FixedEmbedder()
    run = _SpoCRun(config, x, x, x, embedder, {"method": "spoc", "target": "M_1"}, seed=0)
    run.modules["generator"] = Shift(
        torch.tensor([51.3, 101.8]).reshape(1, 1, 1, 2).repeat(1, 3, 1, 1)
    )
    run.modules["discriminator"] = FixedLogits([1.0])
    run.perceptual = FixedPerceptual()
    run.e_m, run.d_ref = torch.zeros(3), torch.tensor(0.2)
    run.adam(1e-4, (0.5, 0.999))
    log = run.step(x, x)
    rec, per, dst, fm = 0.6, 7.0, 0.5 - 0.2 + 0.01, 0.0
    adv = -math.log(1 / (1 + math.exp(-1.0)))
    expected = 1.5 * rec + 0.5 * per + 2.0 * (dst + 0.25 * fm) + 0.3 * adv
    assert log["rec"] == pytest.approx(rec, rel=1e-6) and log["dst"] == pytest.approx(dst)
    assert log["generator"] == pytest.approx(expected, rel=1e-6)
