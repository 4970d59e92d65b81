"""The robustness matrix: sanity checks that catch a gradient-masked toy detector and pass a
plain one, ``camtrace run`` with a robustness section plain and under torchrun (2 gloo
processes: the same matrix), the config section and the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import camtrace
from camtrace.errors import CamtraceError
from camtrace.evaluation.sanity import (
    black_box_below_white_box,
    iterative_beats_single_step,
    non_decreasing_in_eps,
    unbounded_reaches_all,
)
from camtrace.workflows.attacks.run import Pool
from camtrace.workflows.config import parse_config
from camtrace.workflows.report import Report
from camtrace.workflows.robustness.matrix import robustness_matrix
from tiny_runs import is_rate

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ["Canon_Ixus70", "Nikon_D70", "Sony_H50"]


class ChannelMeans(nn.Module):
    """Logits: each channel's mean grey level x ``scale``, so class c is "channel c is
    brightest" and an Linf attack of eps closes a margin by at most 2 eps. ``masked`` rounds
    the input to multiples of 64 first: a gradient-masking input layer (its gradient is
    zero). A ``scale`` of 1e4 / 8 makes the fp32 soft-max one-hot on every patch (margins of
    at least a grey level), so the cross-entropy's gradient is exactly zero."""

    def __init__(self, masked: bool = False, scale: float = 1 / 8) -> None:
        super().__init__()
        self.classes, self.masked = list(CLASSES), masked
        self.scale = nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            self.scale.weight.copy_(torch.eye(3) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.masked:
            x = torch.round(x / 64) * 64
        return self.scale(x.mean((2, 3)))


def toy_pool(n: int = 24, seed: int = 0) -> Pool:
    """Patches whose true channel is brighter by 1-40 grey levels; all classified right."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(60, 190, (n, 16, 16, 3)).astype(np.int64)
    base = images.mean((1, 2))
    for i, c in enumerate(labels):
        others = max(base[i, k] for k in range(3) if k != c)
        images[i, :, :, c] += int(np.ceil(others - base[i, c])) + int(rng.integers(1, 41))
    return Pool(np.clip(images, 0, 255).astype(np.uint8), labels, n, n)


SECTION = {
    "eps": 4,
    "attacks": ["fgsm", "bim", "pgd", "square"],
    "params": {"square": {"queries": 100}, "bim": {"steps": 5}, "pgd": {"steps": 5}},
    "jpeg": 90,
    "adaptive": {"steps": 10, "restarts": 2, "eps": [2, 8], "queries": 300, "surrogate": "plain"},
}


def section(**changes):
    return parse_config({"robustness": {**SECTION, **changes}}).robustness


def matrix(tested: nn.Module, **changes) -> dict:
    """The matrix of a ``tested`` detector beside a plain one ("plain", the surrogate of the
    transfer attack)."""
    dets = {"tested": tested, "plain": ChannelMeans()}
    pools = {k: toy_pool() for k in dets}
    return robustness_matrix(section(**changes), dets, pools, 0, lambda s: None)


def test_toy_pool_is_classified_right() -> None:
    pool = toy_pool()
    with torch.no_grad():
        pred = ChannelMeans()(torch.from_numpy(pool.images).permute(0, 3, 1, 2).float())
    assert (pred.argmax(1).numpy() == pool.labels).all()


def test_checks_pass_on_a_plain_detector() -> None:
    out = matrix(ChannelMeans())
    row = out["adaptive"]["rows"]["tested"]
    assert row["passed"] and out["checks_passed"], row["checks"]
    for loss in ("ce", "dlr"):
        assert row["cells"][f"pgd {loss} 10x2 eps 255"]["error_rate"] == 1.0
    # an Linf attack closes at most 2 eps of a 1-40 grey-level margin: partial success at 4
    assert 0 < out["matrix"]["tested"]["pgd"]["error_rate"] < 1
    assert set(out["matrix"]["tested"]) == {"fgsm", "bim", "pgd", "square"}
    assert out["matrix"]["tested"]["pgd"]["linf"] <= 4


def test_checks_fail_on_a_gradient_masked_detector() -> None:
    out = matrix(ChannelMeans(masked=True))
    row = out["adaptive"]["rows"]["tested"]
    failed = {c["name"] for c in row["checks"] if not c["passed"]}
    assert not row["passed"] and not out["checks_passed"]
    # PGD cannot move it, while PGD crafted on the plain twin transfers
    assert {"unbounded eps reaches ~100%", "black-box / transfer <= white-box"} <= failed
    assert row["cells"]["fgsm"]["error_rate"] == 0  # zero gradient: FGSM moves nothing
    assert out["adaptive"]["rows"]["plain"]["passed"]  # the plain row still passes


def test_the_checks_take_the_strongest_loss_where_cross_entropy_saturates() -> None:
    """A detector whose soft-max is one-hot (no defence, just large logits) fails the checks
    on PGD's cross-entropy alone, as a masked one would; with the DLR loss beside, PGD
    reaches what it reaches on the plain twin and every check passes."""
    saturated = ChannelMeans(scale=1e4 / 8)
    ce_only = matrix(saturated, adaptive={**SECTION["adaptive"], "losses": ["ce"]})
    row = ce_only["adaptive"]["rows"]["tested"]
    failed = {c["name"] for c in row["checks"] if not c["passed"]}
    assert {"unbounded eps reaches ~100%", "black-box / transfer <= white-box"} <= failed
    assert row["cells"]["pgd ce 10x2 eps 4"]["error_rate"] == 0  # nothing to follow

    out = matrix(saturated)
    row, plain = out["adaptive"]["rows"]["tested"], out["adaptive"]["rows"]["plain"]
    assert row["passed"], row["checks"]
    assert out["adaptive"]["losses"] == ["ce", "dlr"] and out["adaptive"]["eps"] == [2, 4, 8, 255]
    assert row["cells"]["pgd ce 10x2 eps 4"]["error_rate"] == 0
    assert row["cells"]["pgd dlr 10x2 eps 255"]["error_rate"] == 1
    for e in (2, 4, 8):  # the margins an Linf eps closes, up to a patch at a tie
        dlr, ce = row["cells"][f"pgd dlr 10x2 eps {e}"], plain["cells"][f"pgd ce 10x2 eps {e}"]
        assert abs(dlr["error_rate"] - ce["error_rate"]) <= 1 / dlr["n"]
    assert {"pgd ce through jpeg", "pgd dlr through jpeg", "transfer pgd dlr from plain"} <= set(
        row["cells"]
    )


def test_adaptive_losses_are_checked() -> None:
    for losses, message in (([], "give each loss once"), (["dlr", "dlr"], "give each loss once")):
        with pytest.raises(CamtraceError, match=f"robustness.adaptive.losses: .*{message}"):
            section(adaptive={"losses": losses})
    with pytest.raises(CamtraceError, match="robustness.adaptive.losses.*use ce \\| cw \\| dlr"):
        section(adaptive={"losses": ["ce", "margin"]})
    assert section(adaptive={"losses": "cw"}).adaptive.losses == ("cw",)


def test_a_trained_generator_is_a_column(tmp_path: Path) -> None:
    from camtrace.attacks.generative import GAPGenerator
    from camtrace.attacks.generative.checkpoint import save_generator

    paths = {}
    for i, target in enumerate(CLASSES[:2]):  # one generator per target, as generators: trains
        torch.manual_seed(i)
        g = GAPGenerator(eps=4).eval()
        card = {"method": "gap", "hparams": g.hparams, "classes": CLASSES, "target": target}
        card |= {"target_index": i, "patch_size": 16}
        paths[target] = str(save_generator(g, tmp_path / f"gap-{target}.safetensors", card))
    dets, pools = {"tested": ChannelMeans()}, {"tested": toy_pool()}
    with pytest.raises(CamtraceError, match="surrogate: plain is not a detector"):
        robustness_matrix(section(), dets, pools, 0, lambda s: None)
    out = robustness_matrix(section(adaptive=None), dets, pools, 0, lambda s: None, {"gap": paths})
    assert out["columns"] == ["fgsm", "bim", "pgd", "square", "gap"]
    gap = out["matrix"]["tested"]["gap"]
    assert gap["n"] == 24 and gap["psnr"] is not None and gap["linf"] <= 4


def test_pure_checks_on_rates() -> None:
    assert iterative_beats_single_step(0.5, {"pgd": 0.48}, 0.05).passed
    assert not iterative_beats_single_step(0.5, {"pgd": 0.3}, 0.05).passed
    assert non_decreasing_in_eps([1, 2, 4], [0.1, 0.3, 0.28], 0.05).passed
    assert not non_decreasing_in_eps([1, 2, 4], [0.1, 0.3, 0.2], 0.05).passed
    assert not unbounded_reaches_all(255, 0.6, 0.05).passed
    assert not black_box_below_white_box({"pgd": 0.2}, {"square": 0.6}, 0.05).passed
    with pytest.raises(CamtraceError, match="increasing"):
        non_decreasing_in_eps([4, 2], [0.1, 0.2], 0.05)


def test_report_draws_the_heat_map_and_prints_failed_checks_red() -> None:
    from camtrace.workflows.robustness.report import add_robustness_report

    report = Report("t")
    add_robustness_report(report, matrix(ChannelMeans(masked=True)))
    page = report.html()
    assert "Robustness matrix" in page and "data:image/png;base64" in page
    assert '<p class="alert">' in page and "unbounded eps reaches ~100%" in page
    assert "tested: PGD 10x2 by eps and loss" in page and "pgd dlr through jpeg" in page


def test_section_rejects_params_of_attacks_not_in_the_matrix() -> None:
    with pytest.raises(CamtraceError, match="robustness.params"):
        section(params={"jsma": {"gamma": 0.1}})
    with pytest.raises(CamtraceError, match="robustness.attacks"):
        section(attacks=["mislgan"])


TINY = {
    "name": "tiny-robustness",
    "seed": 3,
    "data": {"source": "simulate", "preset": "tiny", "shots": 8, "size": [192, 256]},
    "split": {"protocol": "bondi", "eval_scene_frac": 0.25, "val_scene_frac": 0.25},
    "patches": {"protocol": "bondi", "count": 8},
    "train": {"epochs": 1},
    "svm": {"enabled": False},
    "detectors": ["bondi2017", "tuama2016"],
    "robustness": {
        "patches": 4,
        "select": "all",
        "params": {
            "bim": {"steps": 2},
            "pgd": {"steps": 2},
            "mifgsm": {"steps": 2},
            "timifgsm": {"steps": 2, "kernel_size": 3},
            "jsma": {"gamma": 0.005, "k": 8},
            "square": {"queries": 5},
        },
        "adaptive": {"steps": 2, "restarts": 1, "eps": [2], "queries": 5},
    },
}


def tiny_config(root: Path) -> dict:
    return {**TINY, "workdir": str(root / "work")}


@pytest.mark.slow
def test_run_writes_the_matrix_plain_and_under_torchrun(tmp_path: Path) -> None:
    from camtrace.workflows.experiment import run_experiment

    config, runs = tiny_config(tmp_path), tmp_path / "runs"
    run_experiment(config, runs, progress=False, log=lambda _: None)
    run_dir = runs / "tiny-robustness"
    rob = json.loads((run_dir / "metrics.json").read_text())["robustness"]
    assert rob["rows"] == ["bondi2017", "tuama2016"]
    assert rob["columns"] == [
        *("fgsm", "llcm", "bim", "pgd", "mifgsm", "timifgsm", "jsma", "square"),
        *("noise", "noise-luma"),
    ]
    noise = rob["matrix"]["tuama2016"]["noise"]
    assert sum(noise["predicted"].values()) == noise["n"] and noise["linf"] <= 4
    cell = rob["matrix"]["tuama2016"]["pgd"]
    assert cell["n"] == 4 and is_rate(cell["jpeg_error_rate"], 4) and cell["linf"] <= 4
    tuama = rob["adaptive"]["rows"]["tuama2016"]
    assert len(tuama["checks"]) == 4 and "transfer pgd dlr from bondi2017" in tuama["cells"]
    assert isinstance(rob["checks_passed"], bool)
    assert "Robustness matrix" in (run_dir / "report.html").read_text()
    from camtrace.workflows.tables import refresh_tables

    text = refresh_tables(f"<!-- table: robustness {run_dir} -->\n<!-- /table -->\n", Path("/"))
    row = next(line for line in text.splitlines() if line.startswith("| tuama2016 |"))
    pgd = f"{100 * cell['error_rate']:.1f}% / {100 * cell['jpeg_error_rate']:.1f}%"
    assert pgd in row.split(" | ")[1 + 1 + rob["columns"].index("pgd")]

    # the same run under torchrun (data, patches and training cached): the same matrix
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(camtrace.__file__).parents[1]),
        "OMP_NUM_THREADS": "1",
    }
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cli = ["-m", "camtrace.cli", "run", str(tmp_path / "tiny.yaml"), "--runs-dir", str(runs)]
    subprocess.run(
        [*torchrun, "--nproc-per-node", "2", *cli, "--quiet"],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    sharded = json.loads((run_dir / "metrics.json").read_text())["robustness"]
    assert sharded.pop("processes") == 2 and rob.pop("processes") == 1
    assert sharded == rob


def test_bad_surrogate_fails_before_training(tmp_path: Path) -> None:
    from camtrace.workflows.experiment import run_experiment

    config = tiny_config(tmp_path)
    config["robustness"] = {"adaptive": {"surrogate": "xception"}}
    with pytest.raises(CamtraceError, match="surrogate: xception"):
        run_experiment(config, tmp_path / "runs", progress=False, log=lambda _: None)
    assert not (tmp_path / "work").exists()


def test_generators_of_a_run_become_the_generative_column() -> None:
    from camtrace.workflows.generators.run import GeneratorResults, generator_paths

    targets = {"Nikon_D70": {"checkpoint": "g/nikon.safetensors", "seen": {}}}
    results = GeneratorResults({"method": "mislgan", "targets": targets}, {}, {})
    assert generator_paths(results) == {"mislgan": {"Nikon_D70": "g/nikon.safetensors"}}
    assert generator_paths(None) == {}
