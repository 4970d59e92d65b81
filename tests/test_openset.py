"""Open-set identification (issue 25): the scores against their published formulas computed
by hand on small arrays, the threshold's false-rejection rate, the shipped calibrations
rejecting held-out camera models more often than known ones, the input warnings, the CLI's
``--closed-set`` and ``calibrate``, and one-line errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from camtrace.cli import app
from camtrace.data.bench import bench_manifest, eval_slice, get_bench, render_slice
from camtrace.data.images import load_photo
from camtrace.data.manifest import Record
from camtrace.data.simcam import render
from camtrace.errors import CamtraceError
from camtrace.evaluation.openset import auroc, operating_point
from camtrace.models import load_detector
from camtrace.models.inference import UNKNOWN, identify
from camtrace.models.openset import (
    SCORES,
    ClassCloud,
    OpenSet,
    energy,
    fit_cloud,
    load_openset,
    mahalanobis,
    max_softmax,
    openset_for,
    save_openset,
    sidecar_path,
    svm_margin,
    threshold_at_frr,
    vote_share,
)
from camtrace.models.zoo import sha256_of, zoo

SHIPPED = sorted(name for name, w in zoo().items() if w.shipped)


# -- the scores, by hand -------------------------------------------------------------------------


def test_max_softmax_and_energy_are_the_published_formulas() -> None:
    """Hendrycks & Gimpel 2017 on the mean soft-max; Liu et al. 2020 Eq. 5 (T = 1)."""
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])

    def softmax_row(z: list[float]) -> list[float]:
        e = [math.exp(v) for v in z]
        return [v / sum(e) for v in e]

    rows = [softmax_row(list(z)) for z in logits]
    mean = [(rows[0][c] + rows[1][c]) / 2 for c in range(3)]
    assert max_softmax(logits) == pytest.approx(max(mean), abs=1e-12)
    lse = [math.log(sum(math.exp(v) for v in z)) for z in logits]
    assert energy(logits) == pytest.approx((lse[0] + lse[1]) / 2, abs=1e-12)


def test_vote_share_and_svm_margin_by_hand() -> None:
    votes = np.array([[0.1, 3.0, 0.2], [2.0, 0.5, 0.1], [0.0, 1.0, 0.9], [0.3, 0.2, 0.9]])
    assert vote_share(votes, 1) == 0.5  # patches 0 and 2
    pairs = np.array([[0, 1], [0, 2], [1, 2]])  # pair (i, j) votes i when its value > 0
    margins = np.array([[-2.0, 0.5, 1.0], [0.4, -3.0, 0.2]])
    # winner 1: pair (0, 1) signed -1, pair (1, 2) signed +1; the smaller per patch
    per_patch = [min(2.0, 1.0), min(-0.4, 0.2)]
    assert svm_margin(margins, pairs, 1) == pytest.approx(sum(per_patch) / 2)
    # winner 2: pair (0, 2) signed -1, pair (1, 2) signed -1
    assert svm_margin(margins, pairs, 2) == pytest.approx((min(-0.5, -1.0) + min(3.0, -0.2)) / 2)


def test_mahalanobis_of_the_mean_embedding_by_hand() -> None:
    """Lee et al. 2018 Eq. 2: -min_c sqrt((e - mu_c)^T P (e - mu_c)), e the patches' mean."""
    cloud = ClassCloud(np.array([[0.0, 0.0], [3.0, 0.0]]), np.diag([1.0, 4.0]))
    patches = np.array([[0.0, 0.0], [2.0, 1.0]])  # mean (1, 0.5)
    to_0 = math.sqrt(1 * 1**2 + 4 * 0.5**2)
    to_1 = math.sqrt(1 * 2**2 + 4 * 0.5**2)
    assert mahalanobis(patches, cloud) == pytest.approx(-min(to_0, to_1))


def test_fit_cloud_recovers_the_class_means_and_the_inverse_covariance() -> None:
    """Drawn from two Gaussians of known means and one covariance: the means are the class
    averages and the shrunk precision tends to the inverse of the true covariance."""
    rng = np.random.default_rng(0)
    cov = np.array([[2.0, 0.6], [0.6, 0.5]])
    labels = np.repeat([0, 1], 20000)
    means = np.array([[1.0, -1.0], [-2.0, 3.0]])
    x = means[labels] + rng.multivariate_normal([0, 0], cov, len(labels))
    cloud = fit_cloud(x, labels, 2)
    assert np.allclose(cloud.means[0], x[labels == 0].mean(0))
    assert np.allclose(cloud.precision, np.linalg.inv(cov), rtol=0.05, atol=0.02)
    with pytest.raises(CamtraceError, match="no training images of classes \\[2\\]"):
        fit_cloud(x, labels, 3)


@pytest.mark.parametrize("n", [20, 30, 100, 201])
def test_the_threshold_is_the_largest_within_the_false_rejection_rate(n: int) -> None:
    """Brute force over every candidate threshold: the chosen one rejects at most 5% of the
    known scores, and any larger one rejects more."""
    scores = np.random.default_rng(n).normal(size=n)
    tau = threshold_at_frr(scores, 0.05)
    rejected = (scores < tau).mean()
    assert rejected <= 0.05 and rejected == math.floor(0.05 * n) / n
    larger = [t for t in np.sort(scores) if t > tau]
    assert all((scores < t).mean() > 0.05 for t in larger)
    with pytest.raises(CamtraceError, match="not in \\[0, 1\\)"):
        threshold_at_frr(scores, 1.0)


def test_auroc_and_operating_point_by_hand() -> None:
    """AUROC = P(known > unknown) + P(tie) / 2 over all pairs (Mann-Whitney)."""
    known, unknown = np.array([0.9, 0.4, 0.7]), np.array([0.4, 0.1])
    pairs = [(k > u) + 0.5 * (k == u) for k in known for u in unknown]
    assert auroc(known, unknown) == pytest.approx(sum(pairs) / len(pairs))
    op = operating_point(known, np.array([True, True, False]), {"u": unknown}, 0.5)
    assert op["frr"] == pytest.approx(1 / 3)  # 0.4 rejected
    assert op["accuracy"] == pytest.approx(1 / 3)  # 0.9 accepted and right; 0.7 wrong
    assert op["closed_set_accuracy"] == pytest.approx(2 / 3)
    assert op["accepted_accuracy"] == pytest.approx(1 / 2)
    assert op["unknown_rejected"] == {"u": 1.0}


# -- calibrations --------------------------------------------------------------------------------


def _openset(sha: str = "0" * 64) -> OpenSet:
    cloud = ClassCloud(np.zeros((2, 3)), np.eye(3))
    return OpenSet(sha, ("A", "B"), 4, 0.05, "msp", {"msp": 0.6, "vote": 0.5}, cloud)


def test_a_calibration_round_trips_and_names_its_checkpoint(tmp_path: Path) -> None:
    ckpt = tmp_path / "det.safetensors"
    ckpt.write_bytes(b"weights")
    path = save_openset(_openset(sha256_of(ckpt)), sidecar_path(ckpt))
    assert path.name == "det.openset.safetensors"
    back = load_openset(path)
    assert back.thresholds == {"msp": 0.6, "vote": 0.5} and back.classes == ("A", "B")
    assert np.array_equal(back.cloud.precision, np.eye(3))
    assert openset_for(ckpt, sha256_of(ckpt)).score == "msp"
    ckpt.write_bytes(b"retrained")  # a stale calibration is not used
    assert "another version of the weights" in openset_for(ckpt, sha256_of(ckpt))
    assert "no calibration" in openset_for(tmp_path / "other.safetensors", "x")
    with pytest.raises(CamtraceError, match="no 'margin' score"):
        back.with_score("margin")
    path.write_bytes(b"not safetensors")
    with pytest.raises(CamtraceError, match="not a camtrace open-set calibration"):
        load_openset(path)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_detector_ships_its_calibration(name: str) -> None:
    """Beside its weights, naming their sha256, at 5% FRR on the bench's 200 val images."""
    weights = zoo()[name]
    openset = openset_for(weights.path, weights.sha256)
    assert isinstance(openset, OpenSet), openset
    assert list(openset.classes) == list(weights.classes) and openset.score in SCORES
    assert openset.frr == 0.05 and openset.data["thresholds"]["images"] == 200
    assert set(openset.thresholds) >= {"msp", "energy", "vote", "mahalanobis"}


def _unseen(per_model: int) -> list[np.ndarray]:
    """The first shots of device 0 of each unseen-preset model, at the bench's size and seed."""
    bench = get_bench()
    models = ["Corvid_C12", "Arveo_A5", "Pellan_P-3", "Soluna_S9"]
    return [
        render("unseen", 8, bench.seed, bench.size, Record("x", m.split("_")[0], m, "0", "", s))
        for m in models
        for s in ("0", "1")[:per_model]
    ]


@pytest.mark.slow
def test_open_set_rejects_held_out_models_more_often_than_known_ones() -> None:
    """The shipped mislnet and its calibration on bench-sized photos rendered here: one
    evaluation photo of each known model (unseen device and scenes) against two photos of
    each unseen-preset model."""
    detector = load_detector("mislnet")
    openset = openset_for(detector.checkpoint, sha256_of(detector.checkpoint))
    known = render_slice(eval_slice(bench_manifest(), 1))
    unknown = _unseen(2)

    def rejected(images: list[np.ndarray]) -> float:
        return float(
            np.mean([identify(detector, x, openset=openset).model == UNKNOWN for x in images])
        )

    assert rejected(unknown) > rejected(known)
    result = detector.identify(unknown[0])  # open set by default: the API finds the sidecar
    assert result.nearest in detector.classes and result.open_set.score == openset.score
    assert detector.identify(unknown[0], open_set=False).open_set is None
    other_k = detector.identify(unknown[0], k=openset.patches // 2)  # not the calibrated count
    assert other_k.open_set is None and any("answered closed-set" in w for w in other_k.warnings)


# -- input warnings ------------------------------------------------------------------------------


def _colour(h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).integers(30, 220, (h, w, 3), dtype=np.uint8)


def test_inputs_that_cannot_carry_colour_traces_are_named(tmp_path: Path) -> None:
    rgb = _colour(96, 128)
    Image.fromarray(rgb).save(tmp_path / "camera.jpg", quality=95)
    Image.fromarray(rgb).convert("L").save(tmp_path / "grey.png")
    Image.fromarray(rgb).convert("L").convert("RGB").save(tmp_path / "grey-rgb.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    cv2.imwrite(str(tmp_path / "deep.png"), rgb.astype(np.uint16) * 257)
    Image.fromarray(_colour(1080, 1920)).save(tmp_path / "screen.png", compress_level=0)
    exif = Image.Exif()
    exif.get_ifd(0x8769).update({0xA002: 4000, 0xA003: 3000})  # the camera recorded 4000x3000
    Image.fromarray(rgb).save(tmp_path / "small.jpg", exif=exif)
    found = {p.stem: load_photo(p).warnings for p in sorted(tmp_path.iterdir())}
    assert found["camera"] == ()
    assert [w.split(":")[0] for w in found["grey"]] == ["greyscale (L)"]
    assert found["grey-rgb"][0].startswith("no colour (its three channels are equal)")
    assert found["palette"][0].startswith("indexed colour")
    assert found["deep"][0].startswith("more than 8 bits a sample")
    assert found["screen"][0].startswith("screenshot-sized PNG (1920x1080)")
    assert found["small"][0].startswith("resized to 3% of the 4000x3000")
    assert all(len(w) == 1 for k, w in found.items() if k != "camera")
    assert identify_warnings(rgb[..., :1].repeat(3, 2)) == [found["grey-rgb"][0]]


def identify_warnings(rgb: np.ndarray) -> list[str]:
    """The warnings ``identify`` gives an array (a tiny zoo detector, closed set)."""
    return identify(load_detector("marra2017"), rgb).warnings


# -- the CLI on a tiny SimCam detector -----------------------------------------------------------


def run(*args: object) -> object:
    return CliRunner().invoke(app, [*map(str, args)])


@pytest.fixture(scope="module")  # ~15 s: the tests using it are marked slow
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny preset shot, split with a val split, cut 8 patches an image, Marra2017 fitted
    (SVMs, no network: seconds)."""
    root = tmp_path_factory.mktemp("openset")
    sim = root / "sim"
    for args in (
        ("simulate", "--preset", "tiny", "--out", sim, "--shots", "10", "--size", "192", "256"),
        ("split", sim / "manifest.csv", "--eval-scene-frac", "0.2", "--val-scene-frac", "0.3"),
        ("patches", sim / "manifest.csv", "--out", root / "store", "--count", "8"),
        ("train", root / "store", "--arch", "marra2017", "--out", root / "train"),
    ):
        result = run(*args, "--quiet") if args[0] != "split" else run(*args)
        assert result.exit_code == 0, result.output
    return {
        "root": root,
        "sim": sim,
        "store": root / "store",
        "ckpt": root / "train" / "detector.safetensors",
    }


@pytest.mark.slow
def test_calibrate_then_identify_answers_open_set_and_closed_set_on_request(
    tiny: dict[str, Path],
) -> None:
    """The sidecar beside the checkpoint; identify's JSON carries the score, threshold and
    decision; the val photos are rejected at the stated rate; --closed-set turns it off."""
    ckpt, store = tiny["ckpt"], tiny["store"]
    unavailable = run("identify", _photo(tiny, "val"), "--detector", ckpt, "--json")
    assert "open set unavailable" in unavailable.stderr
    assert json.loads(unavailable.stdout)[0]["open_set"] is None
    made = run("calibrate", ckpt, "--store", store, "--frr", "0.2", "--score", "msp", "--quiet")
    assert made.exit_code == 0, made.output
    assert sidecar_path(ckpt).is_file() and "msp (decides)" in made.stdout
    val = [Path(tiny["sim"]) / r for r in _rows(tiny, "val")]
    found = json.loads(run("identify", *val, "--detector", ckpt, "--json").stdout)
    decisions = [f["open_set"] for f in found]
    assert {d["score"] for d in decisions} == {"msp"} and all("threshold" in d for d in decisions)
    rejected = [d["decision"] == "unknown" for d in decisions]
    assert np.mean(rejected) == math.floor(0.2 * len(val)) / len(val)
    assert all((f["model"] == "unknown") == r for f, r in zip(found, rejected))
    closed = json.loads(run("identify", *val, "--detector", ckpt, "--json", "--closed-set").stdout)
    assert all(c["open_set"] is None and c["model"] == f["nearest"] for c, f in zip(closed, found))
    table = run("identify", val[0], "--detector", ckpt)
    assert "of the msp score" in " ".join(table.stdout.split())
    k = run("identify", val[0], "--detector", ckpt, "--k", "4", "--json")
    assert "calibrated at 8 voting patches, not --k 4" in k.stderr


def _rows(tiny: dict[str, Path], split: str) -> list[str]:
    lines = (tiny["sim"] / "manifest.csv").read_text().splitlines()
    head = lines[0].split(",")
    rows = [dict(zip(head, line.split(","))) for line in lines[1:]]
    return [r["path"] for r in rows if r["split"] == split]


def _photo(tiny: dict[str, Path], split: str) -> Path:
    return tiny["sim"] / _rows(tiny, split)[0]


@pytest.mark.slow
def test_identify_prints_the_input_warnings(tiny: dict[str, Path], tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.open(_photo(tiny, "eval")).convert("L").save(grey)
    out = run("identify", grey, "--detector", tiny["ckpt"], "--closed-set")
    assert out.exit_code == 0 and "(warning)" in out.stdout
    assert "warning: grey.png: greyscale (L)" in " ".join(out.stdout.split())
    found = json.loads(run("identify", grey, "--detector", tiny["ckpt"], "--json").stdout)[0]
    assert found["warnings"][0].startswith("greyscale (L)")


@pytest.mark.slow
def test_calibrate_errors_are_one_line(
    tiny: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """What a user gets wrong: one line on stderr naming it, exit status 2, no sidecar."""
    no_val = tmp_path / "no-val.csv"  # the same photos without a val split
    no_val.write_text((tiny["sim"] / "manifest.csv").read_text().replace(",val", ",train"))
    (tmp_path / "images").symlink_to(tiny["sim"] / "images")
    for count in ("8", "4"):
        cut = run("patches", no_val, "--out", tmp_path / f"store{count}", "--count", count)
        assert cut.exit_code == 0, cut.output
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"nope")
    ckpt = tmp_path / "detector.safetensors"
    shutil.copy(tiny["ckpt"], ckpt)
    sidecar_path(ckpt).write_bytes(b"nope")
    cases = [
        (("calibrate", ckpt, "--store", tmp_path / "store8"), "no validation split"),
        (("calibrate", ckpt, "--store", tmp_path / "store4"), "cut a store with its protocol"),
        (("calibrate", ckpt, "--store", tiny["store"], "--frr", "1.5"), "--frr 1.5"),
        (("calibrate", ckpt, "--store", tiny["store"], "--score", "x"), "--score x"),
        (("calibrate", corrupt, "--store", tiny["store"]), "corrupt.safetensors"),
        (("identify", _photo(tiny, "eval"), "--detector", ckpt), "not a camtrace open-set"),
    ]
    from camtrace.cli import main

    for args, message in cases:
        monkeypatch.setattr("sys.argv", ["camtrace", *map(str, args)])
        with pytest.raises(SystemExit) as exit_:
            main()
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert exit_.value.code == 2 and len(lines) == 1, (args, lines)
        assert lines[0].startswith("error:") and message in lines[0], (args, lines)
    assert sidecar_path(ckpt).read_bytes() == b"nope"  # untouched: nothing half-written
    assert not list(tmp_path.glob(".*.tmp")) and not sidecar_path(corrupt).exists()
