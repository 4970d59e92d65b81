"""The ``attacks`` section of an experiment: parsing, target assignment, the gradient-sign
image, and one end-to-end run on the tiny SimCam preset (two detectors, 1 epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from camtrace.attacks import Jpeg, as_pixel_eps
from camtrace.errors import CamtraceError
from camtrace.schema import parse
from camtrace.workflows.attacks.plan import AttackPlan, Epsilon, JpegChoice, plan_attacks
from camtrace.workflows.attacks.report import eps_curves
from camtrace.workflows.attacks.run import assign_targets, gradient_sign_image
from camtrace.workflows.config import AttacksConfig
from camtrace.workflows.experiment import run_experiment
from test_attack_metrics import ColourShare, flat

ZOO = {"bondi2017": 64, "densenet40": 32}  # arch -> patch size


def parse_attacks(section: dict, sizes: dict[str, int]) -> AttackPlan:
    return plan_attacks(parse(AttacksConfig, section, "attacks"), sizes)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "section, message",
    [
        ({"runs": [{"method": "fgsm"}], "bogus": 1}, "unknown key"),
        ({"runs": [{"method": "deepfool"}]}, "deepfool"),
        ({"runs": [{"method": "jsma", "eps": [4]}]}, "no parameter eps"),
        ({"runs": [{"method": "llcm", "eps": [1], "targets": "all"}]}, "least-likely"),
        ({"runs": [{"method": "fgsm", "eps": [2], "detectors": ["xception"]}]}, "xception"),
        ({"runs": [{"method": "fgsm", "eps": [2]}], "jpeg": [None, 101]}, r"jpeg\[1\]: 101"),
        ({"runs": [{"method": "fgsm", "eps": [2]}], "select": "best"}, "select"),
        ({"transfer": {"method": "pgd", "eps": 4}}, "different patch sizes"),
        ({}, "at least one"),
        (
            {
                "runs": [
                    {
                        "method": "pgd",
                        "eps": [4],
                        "params": {"jpeg": "camera", "through_jpeg": True},
                    }
                ]
            },
            "needs targets",
        ),
        ({"runs": [{"method": "fgsm", "eps": [0]}]}, r"runs\[0\]\.eps: epsilon 0 must be positive"),
        ({"runs": [{"method": "fgsm", "eps": [2], "units": "grey"}]}, r"runs\[0\]\.units"),
        (
            {"runs": [{"method": "pgd", "eps": [2]}], "transfer": {"method": "pgd", "eps": [2, 4]}},
            "transfer.eps: give one value",
        ),
    ],
)
def test_bad_sections_fail_before_training(section: dict, message: str) -> None:
    with pytest.raises(CamtraceError, match=message):
        parse_attacks(section, ZOO)


def test_eps_units() -> None:
    assert as_pixel_eps(0.005)[0] == pytest.approx(1.275)  # auto: < 1 is the [0, 1] scale
    assert as_pixel_eps(1, "pixel") == (1, "1 in 0-255 pixel units")
    assert as_pixel_eps(0.01, "unit")[0] == pytest.approx(2.55)


def test_plan_resolves_eps_and_jpeg_once() -> None:
    plan = parse_attacks(
        {
            "jpeg": [None, 90, "camera"],
            "runs": [
                {"method": "fgsm", "eps": [0.002, 2]},
                {"method": "pgd", "eps": 4, "targets": "all", "params": {"jpeg": "camera"}},
            ],
        },
        ZOO,
    )
    fgsm, pgd = plan.runs
    assert fgsm.eps == (Epsilon.of(0.002, "auto"), Epsilon.of(2, "auto"))
    assert fgsm.eps[0].pixels == pytest.approx(0.51) and fgsm.eps[1].pixels == 2
    assert [j.name for j in plan.jpeg] == ["plain", "q90", "camera"]
    assert fgsm.jpeg.plain and pgd.jpeg == JpegChoice(camera=True)
    assert pgd.params == {"jpeg": "camera"}  # as written, for metrics.json
    asked, tables = [], Jpeg(quality=77)
    attack = pgd.build(pgd.eps[0], "Nimbus_N300", lambda m: asked.append(m) or tables, 8)
    assert asked == ["Nimbus_N300"] and attack.options.jpeg == tables and attack.eps == 4


def test_assign_targets_cycles_and_skips_own_class() -> None:
    labels = np.array([0, 1, 2, 0, 1, 2])
    t = assign_targets(labels, [0, 1, 2])
    assert (t != labels).all() and set(t) == {0, 1, 2}
    assert assign_targets(np.array([1, 0]), [1]).tolist() == [-1, 1]


def test_gradient_sign_image_maps_minus_one_to_black() -> None:
    """ColourShare's loss at its own label y falls along channel y and rises along the others."""
    images = flat([(10, 80, 10), (200, 20, 20)])
    sign = gradient_sign_image(ColourShare(), images)
    assert sign.dtype == np.uint8 and sign.shape == images.shape
    assert (sign[0, ..., 1] == 0).all() and (sign[0, ..., [0, 2]] == 255).all()
    assert (sign[1, ..., 0] == 0).all() and (sign[1, ..., 1:] == 255).all()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    root = tmp_path_factory.mktemp("attacks")
    config = {
        "name": "tiny-attacks",
        "seed": 3,
        "workdir": str(root / "work"),
        "data": {"source": "simulate", "preset": "tiny", "shots": 8, "size": [192, 256]},
        "split": {"protocol": "bondi", "eval_scene_frac": 0.25, "val_scene_frac": 0.25},
        "patches": {"protocol": "bondi", "count": 8},
        "train": {"epochs": 1},
        "svm": {"Cs": [0.1]},
        "detectors": ["bondi2017", "mislnet"],
        "attacks": {
            "patches": 6,
            "jpeg": [None, 90, "camera"],
            "examples": 2,
            "runs": [
                {"method": "fgsm", "eps": [0.002, 2]},
                {
                    "method": "jsma",
                    "targets": "all",
                    "patches": 2,
                    "detectors": ["bondi2017"],
                    "params": {"theta": 255, "gamma": 0.02, "k": 16},
                },
                {"method": "llcm", "eps": [1], "units": "pixel", "detectors": ["bondi2017"]},
                {
                    "method": "pgd",
                    "eps": [4],
                    "targets": "all",
                    "patches": 2,
                    "detectors": ["bondi2017"],
                    "params": {"steps": 3, "jpeg": "camera", "through_jpeg": True},
                },
            ],
            "transfer": {"method": "pgd", "eps": 4, "targets": "all", "params": {"steps": 3}},
        },
    }
    metrics = run_experiment(config, runs_dir=root / "runs", progress=False, log=lambda _: None)
    return metrics, root / "runs" / "tiny-attacks"


def test_end_to_end_tables_follow_the_uint8_contract(tiny_run: tuple[dict, Path]) -> None:
    metrics, run_dir = tiny_run
    attacks = json.loads((run_dir / "metrics.json").read_text())["attacks"]
    bondi = attacks["detectors"]["bondi2017"]
    assert bondi["clean"]["picked"] > 0 and bondi["clean"]["plain"]["accuracy"] == 1.0  # Güera
    fgsm, jsma, llcm, through_camera_jpeg = bondi["runs"]
    below_one_level, two = fgsm["settings"]
    assert below_one_level["eps_pixels"] == pytest.approx(0.51)
    assert (
        below_one_level["overall"]["unchanged"] == 1.0
        and below_one_level["overall"]["psnr"] is None
    )
    assert below_one_level["overall"]["error_rate"] == 0.0  # unchanged 8-bit image, still correct
    assert two["overall"]["linf"] <= 2 and two["overall"]["error_rate"] == pytest.approx(
        two["attack"]["success_rate"]
    )
    assert set(two["jpeg"]) == {"q90", "camera"}
    assert [s["target"] for s in jsma["settings"]] == metrics["detectors"]["bondi2017"]["classes"]
    for s in jsma["settings"]:
        if s["n"]:
            assert s["overall"]["sar"] == pytest.approx(s["attack"]["success_rate"])
            assert s["target"] not in s["per_class"]  # patches of the target are left out
    assert (
        llcm["settings"][0]["eps_pixels"] == 1
        and attacks["detectors"]["mislnet"]["runs"][1] is None
    )
    for s in through_camera_jpeg["settings"]:  # success needs the target camera's JPEG too
        if s["n"]:
            rate = s["attack"]["success_rate"]
            assert (
                rate <= s["overall"]["sar"] + 1e-6
                and rate <= s["jpeg"]["camera"]["overall"]["sar"] + 1e-6
            )


def test_end_to_end_transfer_matrix(tiny_run: tuple[dict, Path]) -> None:
    metrics, run_dir = tiny_run
    t = metrics["attacks"]["transfer"]
    assert t["metric"] == "sar" and t["detectors"] == ["bondi2017", "mislnet"]
    for a, src in t["sources"].items():
        assert set(src["attacked"]) == {"plain", "q90", "camera"}
        assert src["attacked"]["plain"][a] == pytest.approx(
            src["attack"]["success_rate"]
        )  # diagonal
        assert all(0 <= v <= 1 for row in src["attacked"].values() for v in row.values())
    html = (run_dir / "report.html").read_text()
    assert (
        "Transfer: pgd" in html
        and "Zhao Table 2 layout" in html
        and "sign of the loss gradient" in html
    )
    assert "attacks" in metrics["timings_s"]


def test_error_vs_eps_curves_have_uint8_jpeg_and_float_lines_in_one_colour_per_run() -> None:
    def setting(eps: float, rate: float) -> dict:
        return {
            "n": 10,
            "eps": eps,
            "eps_pixels": eps,
            "overall": {"error_rate": rate},
            "attack": {"float_success_rate": rate + 0.1},
            "jpeg": {"q90": {"overall": {"error_rate": rate / 2}}},
        }

    runs = [
        {"method": m, "targeted": False, "settings": [setting(1, 0.2), setting(2, 0.6)]}
        for m in ("fgsm", "llcm")
    ]
    ((xs, (series, styles)),) = eps_curves(runs).items()
    assert xs == (1, 2)
    assert series["fgsm (uint8)"] == [20, 60] and series["llcm (after q90)"] == [10, 30]
    assert series["fgsm (float, beside)"] == pytest.approx([30, 70])
    assert (
        styles["fgsm (after q90)"]["color"]
        == styles["fgsm (uint8)"]["color"]
        != styles["llcm (uint8)"]["color"]
    )
    assert (
        styles["fgsm (after q90)"]["linestyle"] == "--"
        and styles["fgsm (uint8)"]["linestyle"] == "-"
    )


def test_gradient_attacks_skip_hand_crafted_detectors_and_refuse_them_when_listed() -> None:
    """Marra 2017's SPAM histograms have no gradient: FGSM leaves it out unless it is listed
    (then the plan fails in one line); Square, which takes none, attacks it."""
    sizes = {"bondi2017": 64, "marra2017": 64}
    section = {"runs": [{"method": "fgsm", "eps": [2]}, {"method": "square", "eps": [4]}]}
    plan = plan_attacks(parse(AttacksConfig, section, "attacks"), sizes, ["marra2017"])
    fgsm, square = plan.runs
    assert fgsm.attacks("bondi2017") and not fgsm.attacks("marra2017")
    assert square.attacks("marra2017")
    listed = {"runs": [{"method": "pgd", "eps": [2], "detectors": ["marra2017"]}]}
    with pytest.raises(CamtraceError, match=r"runs\[0\]\.detectors: .*square"):
        plan_attacks(parse(AttacksConfig, listed, "attacks"), sizes, ["marra2017"])


def test_the_docs_attack_tables_show_the_kept_metrics(tiny_run: tuple[dict, Path]) -> None:
    """`<!-- table: attacks RUN -->` renders each attack run from the run's metrics.json:
    every FGSM row's uint8 error rate, and the accuracy-under-attack table per eps."""
    from camtrace.workflows.tables import refresh_tables

    _, run_dir = tiny_run
    text = refresh_tables(f"<!-- table: attacks {run_dir} -->\n<!-- /table -->\n", Path("/"))
    metrics = json.loads((run_dir / "metrics.json").read_text())["attacks"]
    fgsm = metrics["detectors"]["mislnet"]["runs"][0]
    assert "**`mislnet`, fgsm** (untargeted)" in text
    for s in fgsm["settings"]:
        assert f"| {100 * s['overall']['error_rate']:.1f}% |" in text
    assert "accuracy under attack, ε in 0-255 units" in text and "| ε = 0.51 |" in text
