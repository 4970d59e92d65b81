"""Zhao's defences: the penalty's exact gradient, the mixed batch, the config, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from camtrace.attacks import make_attack
from camtrace.cli import app
from camtrace.defenses import DefenseConfig, GradNormPenalty, make_objective, mixed_batch
from camtrace.defenses.advtrain import cross_entropies, draw_eps
from camtrace.errors import CamtraceError
from camtrace.schema import parse

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(dtype: torch.dtype = torch.float32) -> nn.Module:
    """A smooth two-class net (tanh), so finite differences are exact to O(h^2)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 6 * 6, 2)).to(
        dtype
    )
    with torch.no_grad():
        net[0].weight.mul_(0.05)  # pixels are in 0-255: keep tanh out of saturation
    return net


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_penalty_gradient_matches_finite_differences(norm: str) -> None:
    net = tiny(torch.float64)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (4, 3, 8, 8), generator=g).double()
    y = torch.tensor([0, 1, 1, 0])
    penalty = GradNormPenalty(lam=50.0, norm=norm)
    weight = net[3].weight
    (analytic,) = torch.autograd.grad(penalty(net, x, y), weight)
    h, numeric = 1e-6, torch.zeros_like(weight)

    def nudged(i: int, step: float) -> float:
        with torch.no_grad():
            weight.view(-1)[i] += step
        value = penalty(net, x, y).item()  # the penalty needs autograd: outside no_grad
        with torch.no_grad():
            weight.view(-1)[i] -= step
        return value

    for i in range(weight.numel()):
        numeric.view(-1)[i] = (nudged(i, h) - nudged(i, -h)) / (2 * h)
    # central differences in float64: error O(h^2) + rounding O(1e-16 / h) ~ 1e-10
    assert torch.allclose(analytic, numeric, atol=1e-8, rtol=1e-6)
    # the penalty is not negligible here, so the check covers the second-order term
    (plain,) = torch.autograd.grad(GradNormPenalty(lam=0.0)(net, x, y), weight)
    assert (analytic - plain).abs().max() > 1e-4


def test_eps_is_drawn_over_whole_grey_levels_ends_included() -> None:
    torch.manual_seed(0)
    radii = draw_eps(2000, 1.0, 5.0)
    counts = torch.bincount(radii.long(), minlength=6)[1:]
    assert counts.sum() == 2000 and counts.min() > 300  # 1..5 each ~400 of 2000
    assert set(draw_eps(50, 0.5, 1.7).tolist()) == {1.0}


def test_mixed_batch_has_k_uint8_adversarial_patches_against_current_weights() -> None:
    net = tiny()
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 256, (8, 3, 8, 8), generator=g).float()
    y = torch.arange(8) % 2
    eps = torch.tensor([1.2, 3.9, 3.0])
    mixed = mixed_batch(net, x, y, eps)
    assert torch.equal(mixed[3:], x[3:])
    assert torch.equal(mixed, mixed.round())
    moved = (mixed[:3] - x[:3]).flatten(1).abs().amax(1)
    assert moved.tolist() == [1.0, 3.0, 3.0]  # floor(eps) on the 8-bit grid
    for i, r in enumerate([1, 3, 3]):
        adv, _ = make_attack("fgsm", eps=r)(net, x[i : i + 1].to(torch.uint8), labels=y[i : i + 1])
        assert torch.equal(mixed[i], adv[0].float())
    with torch.no_grad():
        net[3].weight.neg_()  # other weights: other gradient signs, other examples
    assert not torch.equal(mixed_batch(net, x, y, eps)[:3], mixed[:3])


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "bim"])
def test_mixed_batch_attacks_all_k_patches_even_misclassified_ones(attack: str) -> None:
    """Zhao eq. 7: the k adversarial patches are all crafted, also those the current weights
    already get wrong (an early-stopping attack would leave them clean)."""
    net = tiny()
    g = torch.Generator().manual_seed(3)
    x = torch.randint(40, 216, (8, 3, 8, 8), generator=g).float()  # no clipping at 0 or 255
    with torch.no_grad():
        wrong = 1 - net(x).argmax(1)  # every patch misclassified under these labels
    mixed = mixed_batch(net, x, wrong, torch.full((6,), 2.0), attack)
    changed = (mixed != x).flatten(1).any(1)
    assert changed[:6].all() and not changed[6:].any()


def test_mixed_objective_weights_adversarial_losses_by_alpha() -> None:
    net = tiny()
    x = torch.randint(0, 256, (6, 3, 8, 8), generator=torch.Generator().manual_seed(3)).float()
    y = torch.arange(6) % 2
    objective = make_objective(DefenseConfig(kind="advtrain", k=2, alpha=0.25))
    torch.manual_seed(5)
    loss = objective(net, x, y)
    torch.manual_seed(5)
    losses = cross_entropies(net, mixed_batch(net, x, y, draw_eps(2, 1.0, 5.0)), y)
    expected = (losses[2:].sum() + 0.25 * losses[:2].sum()) / (4 + 0.25 * 2)
    assert torch.allclose(loss, expected, rtol=1e-6)


def test_both_penalises_the_mixed_batch() -> None:
    net = tiny()
    x = torch.randint(0, 256, (4, 3, 8, 8), generator=torch.Generator().manual_seed(4)).float()
    y = torch.arange(4) % 2
    both = make_objective(DefenseConfig(kind="both", lam=10.0, k=2))
    mixing = make_objective(DefenseConfig(kind="advtrain", k=2))
    torch.manual_seed(6)
    penalised = both(net, x, y)
    torch.manual_seed(6)
    assert penalised > mixing(net, x, y)  # same batch, plus a positive penalty
    assert both.card["kind"] == "both" and both.card["lambda"] == 10.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "adv"}, "defense.kind: 'adv' is not allowed; use none | gradnorm | advtrain"),
        ({"kind": "gradnorm", "k": 8}, "defense.k: applies to kind advtrain or both only"),
        ({"kind": "advtrain", "attack": "jsma"}, "defense.attack: 'jsma' is not allowed; use fgsm"),
        ({"kind": "both", "eps_min": 4, "eps_max": 2}, "defense.eps_max: eps range [4, 2]"),
    ],
)
def test_bad_defense_values_fail_in_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(CamtraceError, match=None) as info:
        parse(DefenseConfig, kwargs, "defense")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_train_with_a_defense_writes_it_in_the_card(
    pipeline: dict[str, Path],
) -> None:
    out = pipeline["root"] / "defended"
    args = ["train", pipeline["store"], "--out", out, "--epochs", "1", "--quiet"]
    args += ["--defense", "both", "--lambda", "0.5", "--k", "8", "--no-svm"]
    result = CliRunner().invoke(app, [*map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    info = CliRunner().invoke(app, ["info", str(out / "detector.safetensors")])
    card = json.loads(info.stdout)
    assert card["defense"]["kind"] == "both"
    assert card["defense"]["lambda"] == 0.5 and card["defense"]["k"] == 8
    assert card["defense"]["eps"] == [1.0, 5.0] and card["defense"]["attack"] == "fgsm"
    assert len(card["training"]) and card["best_epoch"] == 1


def test_config_defense_parses_and_names_the_detector() -> None:
    from camtrace.workflows.config import parse_config
    from camtrace.workflows.identification import detector_specs

    config = parse_config(
        {
            "detectors": [
                "tuama2016",
                {"arch": "tuama2016", "defense": "gradnorm"},
                {"arch": "tuama2016", "defense": {"kind": "advtrain", "k": 16, "eps_max": 3}},
            ]
        }
    )
    specs = detector_specs(config)
    assert [s.name for s in specs] == ["tuama2016", "tuama2016-gradnorm", "tuama2016-advtrain"]
    assert specs[0].defense is None and specs[1].defense == DefenseConfig(kind="gradnorm")
    assert specs[2].defense == DefenseConfig(kind="advtrain", k=16, eps_max=3.0)


@pytest.mark.parametrize(
    ("defense", "message"),
    [
        ({"kind": "advtrain", "k": 0}, "detector.defense.k: 0 is not allowed; use int >= 1"),
        ({"kind": "gradnorm", "alpha": 1}, "detector.defense.alpha: applies to kind advtrain"),
        ("shield", "detector.defense.kind: 'shield' is not allowed; use none | gradnorm"),
    ],
)
def test_config_bad_defense_fails_in_one_line(defense: object, message: str) -> None:
    from camtrace.workflows.config import parse_config

    with pytest.raises(CamtraceError) as info:
        parse_config({"detector": {"arch": "tuama2016", "defense": defense}})
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_config_refuses_two_detectors_of_one_name() -> None:
    from camtrace.workflows.config import parse_config
    from camtrace.workflows.identification import detector_specs

    config = parse_config({"detectors": ["tuama2016", {"arch": "tuama2016", "patches": "gan"}]})
    with pytest.raises(CamtraceError, match=r"detectors\[1\]: the name 'tuama2016' is taken"):
        detector_specs(config)


def test_experiment_trains_defended_detectors_and_reports_zhaos_tables(tmp_path: Path) -> None:
    from camtrace.workflows.defenses.report import accuracy_curves, table1_rows
    from camtrace.workflows.experiment import run_experiment

    config = {
        "name": "tiny-zhao",
        "workdir": str(tmp_path / "work"),
        "data": {"source": "simulate", "preset": "tiny", "shots": 6, "size": [128, 192]},
        "split": {"protocol": "random", "fractions": [0.4, 0.1, 0.5]},
        "patches": {"protocol": "bondi", "count": 4},
        "train": {"epochs": 1, "batch_size": 16, "optimizer": "adam", "lr": 1e-4},
        "detectors": [
            "yang2018",
            {"arch": "yang2018", "defense": {"kind": "advtrain", "k": 8}},
            {"arch": "yang2018", "name": "y32", "patches": {"protocol": "bondi", "size": 32}},
        ],
        "attacks": {
            "patches": 4,
            "select": "all",
            "jpeg": [None, 90],
            "examples": 0,
            "runs": [{"method": "fgsm", "eps": [1, 2], "units": "pixel"}],
        },
    }
    metrics = run_experiment(config, runs_dir=tmp_path / "runs", progress=False, log=lambda _: 0)
    dets = metrics["detectors"]
    assert list(dets) == ["yang2018", "yang2018-advtrain", "y32"]
    assert dets["yang2018"]["defense"] == {"kind": "none"}
    assert dets["yang2018-advtrain"]["defense"]["k"] == 8
    assert dets["y32"]["patch_size"] == 32
    assert (tmp_path / "runs" / "tiny-zhao" / "yang2018-advtrain.safetensors").is_file()
    html = (tmp_path / "runs" / "tiny-zhao" / "report.html").read_text()
    assert "Zhao Table 1 layout" in html and "one line per defence" in html
    curves = accuracy_curves(dets, metrics["attacks"]["detectors"])
    xs, series = curves["yang2018", 64, "fgsm"]
    assert xs == [1.0, 2.0] and len(curves) == 2  # 64 px: both defences on one figure; 32 px
    assert sorted(series)[:2] == ["advtrain, after q90", "advtrain, uint8"]
    assert [r["defence"] for r in table1_rows(dets)] == ["none", "advtrain"]
    from camtrace.workflows.tables import refresh_tables

    run_dir = tmp_path / "runs" / "tiny-zhao"
    text = refresh_tables(f"<!-- table: defenses {run_dir} -->\n<!-- /table -->\n", Path("/"))
    advtrain = metrics["attacks"]["detectors"]["yang2018-advtrain"]["runs"][0]["settings"]
    assert "**yang2018, 64x64, fgsm: accuracy under attack**" in text
    row = next(line for line in text.splitlines() if line.startswith("| advtrain, uint8 |"))
    assert (
        row
        == "| advtrain, uint8 | "
        + " | ".join(f"{100 * s['overall']['accuracy']:.1f}%" for s in advtrain)
        + " |"
    )
    assert "**`yang2018-advtrain`: the camera model most patches are read as" in text
    counts = advtrain[0]["predicted"]  # eps 1: the class most of the 4 patches were read as
    top = max(counts, key=counts.get)
    row = next(line for line in text.split("read as")[2].splitlines() if line.startswith("| fgsm"))
    assert row.split(" | ")[1] == f"{top} {100 * counts[top] / sum(counts.values()):.0f}%"


def test_fine_tuning_starts_from_the_init_weights(pipeline: dict[str, Path]) -> None:
    """train.init: a fine-tune at learning rate 0 ends on exactly the weights it started
    from (the init checkpoint's, read back from the file); other classes are refused."""
    from camtrace.data.patch_store import PatchStore
    from camtrace.models import load_detector
    from camtrace.training.detector import train_detector
    from camtrace.training.engine import TrainConfig

    init = str(pipeline["ckpt"])
    config = TrainConfig(epochs=1, lr=0.0, weight_decay=0.0, precision="fp32", init=init)
    store = PatchStore.open(pipeline["store"])
    tuned = train_detector(store, "bondi2017", pipeline["root"] / "tuned", config, svm=False)
    start = load_detector(init).state_dict()
    for key, value in tuned.detector.state_dict().items():
        assert torch.equal(value, start[key]), key
    other = build_other(pipeline["root"] / "other.safetensors")
    with pytest.raises(CamtraceError, match="train.init: .* is a bondi2017 of 2 classes"):
        train_detector(
            store, "bondi2017", pipeline["root"] / "bad", TrainConfig(epochs=1, init=str(other))
        )


def build_other(path: Path) -> Path:
    from camtrace.models import build, save_detector

    return save_detector(build("bondi2017", ["A_1", "B_2"], patch_size=64), path)


def test_one_defence_trained_two_ways_keeps_two_lines_in_zhaos_tables() -> None:
    from camtrace.workflows.defenses.report import defense_labels, table1_rows

    def entry(kind: str, accuracy: float, size: int = 64) -> dict:
        patch = {"patch": {"accuracy": accuracy}}
        ident = {"primary": "cnn", "cnn": patch}
        return {
            "arch": "yang2018",
            "patch_size": size,
            "defense": {"kind": kind},
            "identification": ident,
        }

    dets = {
        "yang2018": entry("none", 0.888),
        "yang2018-both": entry("both", 0.882),
        "yang2018-both-scratch": entry("both", 0.807),
        "y32-both": entry("both", 0.7, size=32),  # another patch size: its own table column
    }
    assert defense_labels(dets) == {
        "yang2018": "none",
        "yang2018-both": "both (yang2018-both)",
        "yang2018-both-scratch": "both (yang2018-both-scratch)",
        "y32-both": "both",
    }
    rows = table1_rows(dets)
    assert [(r["defence"], r["64x64"]) for r in rows[:3]] == [
        ("none", "88.8%"),
        ("both (yang2018-both)", "88.2%"),
        ("both (yang2018-both-scratch)", "80.7%"),
    ]
