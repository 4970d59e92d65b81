"""``camtrace run spoc``: the ``spoc`` section's key-path errors and the plan's checks, the PSNR
tuning of the gradient baselines, SpoC's generators trained in the workflow without any
detector, its one-line errors, and one tiny run on the tiny SimCam preset (one target, two
iterations of everything, no perceptual term) that writes SpoC's Tables 1-6 into metrics.json
and the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from camtrace.attacks.generative import EmbedderConfig, train_embedder, train_spoc
from camtrace.data.patch_store import PatchStore
from camtrace.errors import CamtraceError
from camtrace.models.base import Detector
from camtrace.schema import parse
from camtrace.workflows import experiment
from camtrace.workflows.config import SpocSectionConfig, parse_config
from camtrace.workflows.experiment import run_experiment
from camtrace.workflows.spoc import run as spoc_run
from camtrace.workflows.spoc.inputs import Inputs, target_patches
from camtrace.workflows.spoc.plan import SpocPlan, closest_eps, plan_spoc
from camtrace.workflows.spoc.run import train_spoc_all, tune_eps
from tiny_runs import tiny_experiment

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["Halden_H20", "Kairo_DX-50", "Nimbus_N300"]
SIZES = {"tuama2016": 64, "bondi2017": 64, "mislnet": 64}


@pytest.mark.parametrize(
    "section, message",
    [
        ({}, r"spoc\.targets: required"),
        ({"targets": ["A"], "inputs": ["gan"]}, r"spoc\.inputs\[0\]: 'gan' is not allowed"),
        ({"targets": ["A"], "inputs": []}, r"spoc\.inputs: give at least one value"),
        ({"targets": ["A"], "gradient": ["gap"]}, r"spoc\.gradient\[0\]: 'gap' is not allowed"),
        ({"targets": ["A"], "gradient": ["jsma"]}, r"spoc\.gradient: jsma has no eps"),
        ({"targets": ["A"], "generative": ["spoc"]}, r"spoc\.generative\[0\]: 'spoc'"),
        ({"targets": ["A"], "params": {"bim": {}}}, r"spoc\.params: \[.bim.\]"),
        ({"targets": ["A"], "params": {"pgd": {"eps": 4}}}, r"spoc\.params\.pgd: .*without eps"),
        ({"targets": ["A"], "psnr": -1}, r"spoc\.psnr: -1 is not allowed"),
        ({"targets": ["A"], "synthetic": {"size": 96}}, r"spoc\.synthetic\.size: 96 is not 4 x"),
        ({"targets": ["A"], "training": {"iterations": 0}}, r"spoc\.training\.iterations: 0"),
        ({"targets": ["A"], "embedder": {"models": 3}}, r"spoc\.embedder\.models: unknown key"),
        ({"targets": ["A"], "gan_train": {"epochs": 0}}, r"spoc\.gan_train\.epochs: 0"),
    ],
)
def test_bad_sections_name_their_key_path(section: dict, message: str) -> None:
    with pytest.raises(CamtraceError, match=message):
        parse_config({"spoc": section})


def _section(**keys: object) -> SpocSectionConfig:
    given = {"targets": ["Nimbus_N300"], "crafted_on": ["bondi2017"], **keys}
    return parse(SpocSectionConfig, given, "spoc")


@pytest.mark.parametrize(
    "keys, sizes, message",
    [
        ({"targets": ["Canon_Ixus70"]}, SIZES, r"spoc\.targets: \['Canon_Ixus70'\] are not"),
        ({"crafted_on": ["xception"]}, SIZES, r"spoc\.crafted_on: \['xception'\] are not"),
        ({"crafted_on": ["bondi2017"]}, {**SIZES, "mislnet": 48}, "one patch size"),
        ({"crafted_on": ["bondi2017"]}, {"bondi2017": 64, "mislnet": 64}, "at least 3"),
        ({"gan_detectors": ["autogan"]}, SIZES, r"gan_detectors\[0\]: 'autogan' is not"),
        ({"crafted_on": ["bondi2017"], "synthetic": {"size": 32}}, SIZES, "cannot give"),
    ],
)
def test_plan_refuses_what_it_cannot_measure(keys: dict, sizes: dict, message: str) -> None:
    with pytest.raises(CamtraceError, match=message):
        plan_spoc(_section(**keys), sizes, CLASSES, seed=0)


def test_closest_eps_on_a_toy() -> None:
    psnrs = {1.0: 48.0, 2.0: 42.0, 4.0: 36.0, 8.0: 30.0, 16.0: 24.0}
    assert closest_eps(psnrs, 31.0) == 8.0 and closest_eps(psnrs, 40.0) == 2.0
    assert closest_eps({2.0: 33.0, 4.0: 29.0}, 31.0) == 2.0  # a tie: the smaller eps
    assert closest_eps({1.0: None, 8.0: 20.0}, 60.0) == 8.0  # unchanged is never closest


class _Toy(nn.Module):
    """Two classes read from the mean of the red channel: every pixel has a gradient."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x[:, 0].mean(dim=(1, 2)) / 255
        return torch.stack([m, 1 - m], 1) * 10


def test_tune_eps_picks_the_budget_whose_measured_psnr_is_closest() -> None:
    plan = plan_spoc(_section(eps=[1, 4, 16], params={"pgd": {"steps": 10}}), SIZES, CLASSES, 0)
    x = np.random.default_rng(0).integers(40, 200, (6, 16, 16, 3), dtype=np.uint8)
    chosen, psnrs = tune_eps(plan, "pgd", _Toy(), x, target=0)
    assert chosen == min(psnrs, key=lambda e: abs(psnrs[e] - 31.0))
    for e, p in psnrs.items():  # an Linf budget e bounds the MSE by e^2
        assert p >= 20 * math.log10(255 / e) - 1e-6
    assert psnrs[1.0] > psnrs[4.0] > psnrs[16.0]


def test_training_spoc_in_the_workflow_reads_no_detector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def touched(*_: object, **__: object) -> None:
        raise AssertionError("a detector was read while training SpoC")

    for module in (spoc_run, experiment):
        monkeypatch.setattr(module, "load_detector", touched, raising=False)
    monkeypatch.setattr(Detector, "forward", touched)
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    embedder = train_embedder(
        patches,
        ["a", "a", "b", "b"] * 2,
        EmbedderConfig(models_per_batch=2, patches_per_model=2, iterations=1),
        tmp_path / "e",
    )
    training = {"iterations": 1, "batch_size": 2, "lambda_p": 0}
    plan = plan_spoc(_section(training=training), SIZES, CLASSES, 0)
    plan = SpocPlan(plan.section, plan.classifiers, plan.crafted_on, plan.targets, 32, 0)
    s = Inputs(patches, patches[:2], patches[:2])
    paths = train_spoc_all(
        plan, {"synthetic": lambda _t: s}, {"Nimbus_N300": patches}, embedder, tmp_path, print
    )
    assert set(paths["synthetic"]) == {"spoc", "only-embedder", "only-discriminator"}
    card = json.loads((paths["synthetic"]["spoc"]["Nimbus_N300"].parent / "log.json").read_text())
    assert [r["iteration"] for r in card["losses"]] == [1]
    # the folder of one target refuses another target's training, in one line
    with pytest.raises(CamtraceError, match="another target"):
        train_spoc(
            patches, patches, patches[:2], embedder, "Kairo_DX-50",
            plan.section.training, paths["synthetic"]["spoc"]["Nimbus_N300"].parent,
        )  # fmt: skip


def tiny_config(root: Path, **spoc: object) -> dict:
    return tiny_experiment(
        root,
        "tiny-spoc",
        detectors=["tuama2016", "bondi2017", "mislnet"],
        spoc={
            "targets": ["Nimbus_N300"],
            "crafted_on": ["bondi2017"],
            "gan_detectors": ["spec", "xception"],
            "gradient": ["pgd"],
            "params": {"pgd": {"steps": 2}},
            "eps": [2, 8],
            "generative": ["gap"],
            "generator_iterations": 2,
            "generator_batch": 2,
            "train_patches": 8,
            "val_patches": 4,
            "eval_patches": 4,
            "synthetic": {"size": 64, "iterations": 2, "train": 8, "val": 4, "eval": 4},
            "gan_train": {"epochs": 1},
            "embedder": {
                "shots": 1,
                "count": 2,
                "iterations": 2,
                "models_per_batch": 4,
                "patches_per_model": 2,
            },
            "training": {"iterations": 2, "batch_size": 2, "val_every": 1, "lambda_p": 0},
            "rec_sweep": [1, 10],
            "examples": 2,
            **spoc,
        },
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("spoc")
    metrics = run_experiment(
        tiny_config(root), runs_dir=root / "runs", progress=False, log=lambda _: None
    )
    return metrics, root


@pytest.mark.slow
def test_run_spoc_writes_tables_1_to_6(tiny_run: tuple[dict, Path]) -> None:
    _, root = tiny_run
    run_dir = root / "runs" / "tiny-spoc"
    s = json.loads((run_dir / "metrics.json").read_text())["spoc"]
    judges = ["tuama2016", "bondi2017", "mislnet"]
    assert s["classifiers"] == judges and set(s["table3"]) == set(judges)
    assert set(s["table4"]) == {"synthetic", "real"}
    for kind, rows in s["table4"].items():
        assert [(r["block"], r["method"]) for r in rows] == [
            ("none", "unattacked"),
            ("bondi2017", "pgd"),
            ("bondi2017", "gap"),
            ("ensemble", "pgd"),
            ("ensemble", "gap"),
            ("none", "spoc"),
        ], kind
        for r in rows:
            for group in ("plain", "camera_jpeg"):
                assert set(r[group]) == set(judges)
                assert all(v * 4 == round(v * 4) for v in r[group].values())  # counts of 4
            assert r["psnr"] is None or r["psnr"] > 0
        assert rows[0]["psnr"] is None  # the control leaves S unchanged
    assert s["eps"]["pgd on bondi2017"]["chosen"] in (2.0, 8.0)
    assert set(s["eps"]) == {"pgd on bondi2017"} | {f"pgd on ensemble-{j}" for j in judges}
    variants = ["spoc", "only-embedder", "only-discriminator", "spoc-rec-1"]  # 10: spoc's
    assert [r["method"] for r in s["table5"]["synthetic"]] == variants
    assert set(s["validation"]) == {"synthetic -> Nimbus_N300", "real -> Nimbus_N300"}
    curves = s["validation"]["synthetic -> Nimbus_N300"]
    assert list(curves) == variants
    assert all([v["iteration"] for v in c] == [1, 2] for c in curves.values())
    assert list(s["validation"]["real -> Nimbus_N300"]) == ["spoc"]
    for table in ("table1", "table2"):
        assert set(s[table]["before"]) == {"spec", "xception"} and s[table]["n_after"] == 4
    assert set(s["table6"][0]["plain"]) == set(judges)
    assert s["paper"]["table4"]["plain"][-1][3:] == [53.34, 67.57, 81.37, 71.65]
    html = (run_dir / "report.html").read_text()
    assert "Table 4 (after JPEG with the target camera" in html and "Table 6" in html
    assert "camtrace&#x27;s extension" in html and "SpoC 2021: Ensemble" in html
    assert "synthetic -&gt; Nimbus_N300: detector-free validation" in html


def test_a_missing_embedder_and_a_target_without_images_fail_in_one_line(
    tiny_run: tuple[dict, Path],
) -> None:
    _, root = tiny_run
    missing = str(root / "nowhere.safetensors")
    config = tiny_config(root, embedder={"path": missing}, inputs=["real"])
    with pytest.raises(CamtraceError, match="SpoC embedder checkpoint not found") as e:
        run_experiment(config, runs_dir=root / "runs", progress=False, log=lambda _: None)
    assert "\n" not in str(e.value)
    store = PatchStore.open(
        json.loads((root / "runs" / "tiny-spoc" / "metrics.json").read_text())["detectors"][
            "bondi2017"
        ]["patch_store"]
    )
    plan = plan_spoc(_section(), SIZES, CLASSES, 0)
    with pytest.raises(CamtraceError, match=r"model \['Pellan_P-3'\] not in this patch store"):
        target_patches(store, "Pellan_P-3", plan)
    with pytest.raises(CamtraceError, match="Nimbus_N300 has no train-split patches"):
        target_patches(_NoPatches(), "Nimbus_N300", plan)


class _NoPatches:
    """A patch store in which the target camera model has no patch."""

    path = Path("patches")

    def indices(self, split: str, models: list[str]) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    def patches(self, indices: np.ndarray) -> np.ndarray:
        return np.zeros((len(indices), 64, 64, 3), dtype=np.uint8)


def test_baselines_are_crafted_on_the_first_two_detectors_by_default() -> None:
    section = parse(SpocSectionConfig, {"targets": ["Nimbus_N300"]}, "spoc")
    plan = plan_spoc(section, SIZES, CLASSES, 0)
    assert plan.crafted_on == ("tuama2016", "bondi2017") and plan.classifiers == tuple(SIZES)


def test_sweep_rows_average_the_targets_curves_and_read_each_weight() -> None:
    from camtrace.workflows.spoc.report import sweep_rows

    def cell(a: float, b: float) -> dict:
        return {"psnr": 30.0, "plain": {"m": a}, "camera_jpeg": {"m": b}}

    def steps(*psnr: float) -> list[dict]:
        return [
            {"iteration": 50 * (i + 1), "psnr": p, "within_d_ref": 0.5, "distance": 0.1}
            for i, p in enumerate(psnr)
        ]

    m = {
        "inputs": ["synthetic"],
        "classifiers": ["m"],
        "table4": {"synthetic": [{"method": "unattacked", **cell(0.0, 0.25)}]},
        "table5": {"synthetic": [{"method": "spoc", **cell(0.5, 1.0)},
                                 {"method": "spoc-rec-10", **cell(0.25, 0.5)}]},
        "validation": {
            "synthetic -> A": {"spoc": steps(20, 24), "spoc-rec-10": steps(30, 30)},
            "synthetic -> B": {"spoc": steps(22, 26), "spoc-rec-10": steps(34, 32)},
            "real -> A": {"spoc": steps(0, 0)},
        },
    }  # fmt: skip
    rows = sweep_rows(m, weight=1.0)
    assert [(r["variant"], r["L_REC weight"]) for r in rows] == [
        ("unattacked", ""), ("spoc", "1"), ("spoc-rec-10", "10")
    ]  # fmt: skip
    assert rows[0]["SAR after the target's JPEG"] == "25%"
    assert rows[1]["validation PSNR (dB) by step"] == "21.0, 25.0 (at 50, 100)"
    assert rows[2]["validation PSNR (dB) by step"].startswith("32.0, 31.0")
    assert rows[2]["within d_ref (%) by step"] == "50, 50"


def test_the_sweep_table_of_a_run_without_a_sweep_is_a_one_line_error(tmp_path: Path) -> None:
    from camtrace.workflows.tables import spoc_sweep_table

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"spoc": {"table4": {}}}))
    with pytest.raises(CamtraceError, match="no kept spoc run with its config.yaml"):
        spoc_sweep_table(tmp_path, "run")
