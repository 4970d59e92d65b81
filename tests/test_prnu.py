"""PRNU device fingerprints against the papers' formulas computed by hand on small hand-made
arrays (the denoiser's Wiener shrinkage and residual, Lukas 2006; the ML estimate with
saturated pixels left out, the zero-mean rows and columns and the Wiener filter in the DFT,
Chen 2008; the cross-correlation and the PCE, Goljan 2009, with the peak's neighbourhood at
the corner), then on SimCam cameras: a photo matches its own device far above 60 and no
other; files, the CLI's one-line errors, the ``prnu:`` section and PRNU in the robustness
matrix on a tiny run."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import pywt

from camtrace.data.codec import save_image
from camtrace.data.images import load_rgb
from camtrace.data.manifest import Manifest
from camtrace.data.simcam import dataset_name, simulate
from camtrace.models.fingerprint import load_fingerprint
from camtrace.models.prnu import (
    FingerprintSums,
    ResidualSettings,
    cross_correlation,
    local_wiener_noise,
    pce,
    saturated,
    wavelet_noise,
    wiener_dft,
    zero_mean_total,
)
from camtrace.workflows.experiment import run_experiment
from camtrace.workflows.prnu.batch import enrol_devices, pce_table
from camtrace.workflows.prnu.files import prnu_enroll, prnu_match
from camtrace.workflows.prnu.run import scores
from camtrace.workflows.robustness.report import prnu_markdown
from camtrace.workflows.tables import prnu_table
from tiny_runs import cli_error

pytestmark = pytest.mark.usefixtures("one_thread")
RNG = np.random.default_rng(25)


def windowed(x: np.ndarray, i: int, j: int, w: int) -> np.ndarray:
    """The w x w neighbourhood of (i, j), wrapping around the edges, by explicit indices."""
    h, v = x.shape
    return np.array([[x[(i + a) % h, (j + b) % v] for b in range(-(w // 2), w // 2 + 1)]
                     for a in range(-(w // 2), w // 2 + 1)])  # fmt: skip


def wiener_noise_by_hand(c: np.ndarray, var0: float, windows: tuple[int, ...]) -> np.ndarray:
    """Lukas 2006, App. A: var = min_w max(0, mean_w(c^2) - var0); noise = c var0 / (var +
    var0), pixel by pixel."""
    out = np.zeros_like(c)
    for i, j in itertools.product(*map(range, c.shape)):
        var = min(max(0.0, (windowed(c, i, j, w) ** 2).mean() - var0) for w in windows)
        out[i, j] = c[i, j] * var0 / (var + var0)
    return out


def test_the_wiener_shrinkage_is_lukas_formula_by_hand() -> None:
    c = RNG.normal(0, 4, (7, 9))
    c[2, 3] = 40.0  # an edge: its neighbourhood's variance is high, so it is kept as signal
    got = local_wiener_noise(c, 9.0, (3, 5))
    np.testing.assert_allclose(got, wiener_noise_by_hand(c, 9.0, (3, 5)), rtol=1e-10)
    assert abs(got[2, 3]) < 0.2 * 40  # mostly signal: little of it is noise


def test_the_residual_is_the_image_minus_its_denoised_version() -> None:
    """W = I - F(I), F keeping the approximation and shrinking each detail coefficient to its
    Wiener estimate c var / (var + var0), computed here with PyWavelets' one-level transform
    and the shrinkage by hand."""
    x = RNG.uniform(0, 255, (16, 16))
    settings = ResidualSettings(levels=1, sigma=5.0, windows=(3, 5))
    approx, details = pywt.dwt2(x, "db4", mode="periodization")
    denoised_details = []
    for d in details:
        noise = wiener_noise_by_hand(d, 25.0, (3, 5))
        denoised_details.append(d - noise)  # = d var / (var + var0)
    denoised = pywt.idwt2((approx, tuple(denoised_details)), "db4", mode="periodization")
    np.testing.assert_allclose(wavelet_noise(x, settings), x - denoised, atol=1e-9)


def test_a_flat_image_has_no_residual_and_any_size_keeps_its_shape() -> None:
    flat = np.full((2, 37, 50), 120.0)
    out = wavelet_noise(flat, ResidualSettings(levels=2))
    assert out.shape == flat.shape
    np.testing.assert_allclose(out, 0, atol=1e-9)


def test_zero_mean_total_is_double_centring_of_each_cfa_lattice() -> None:
    """Each 2x2 sub-lattice S becomes S - row means - column means + grand mean (the
    two-way residual), written out by hand."""
    x = RNG.normal(0, 1, (6, 8))
    expected = np.empty_like(x)
    for dy, dx in itertools.product((0, 1), (0, 1)):
        s = x[dy::2, dx::2]
        rows = np.array([sum(r) / len(r) for r in s])
        cols = np.array([sum(s[:, k]) / len(s) for k in range(s.shape[1])])
        expected[dy::2, dx::2] = s - rows[:, None] - cols[None, :] + s.sum() / s.size
    got = zero_mean_total(x)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    for dy, dx in itertools.product((0, 1), (0, 1)):
        np.testing.assert_allclose(got[dy::2, dx::2].mean(axis=0), 0, atol=1e-12)
        np.testing.assert_allclose(got[dy::2, dx::2].mean(axis=1), 0, atol=1e-12)


def test_the_dft_wiener_filter_keeps_the_phase_and_shrinks_the_magnitude_by_hand() -> None:
    x = RNG.normal(0, 2, (8, 8))
    x += 3 * np.cos(np.pi * np.arange(8))[None, :]  # a periodic column pattern: a DFT peak
    spectrum = np.fft.fft2(x)
    magnitude = np.abs(spectrum) / 8
    kept = wiener_noise_by_hand(magnitude, 2.0**2, (3, 5, 7, 9))
    expected = np.fft.ifft2(spectrum * kept / magnitude).real
    np.testing.assert_allclose(wiener_dft(x, 2.0), expected, atol=1e-10)
    peak = (0, 4)  # the pattern's frequency: suppressed far more than the flat noise floor
    assert kept[peak] / magnitude[peak] < 0.5 * np.median(kept / magnitude)
    sigma = np.sqrt(((x - x.mean()) ** 2).sum() / (x.size - 1))  # default: the std, ddof 1
    np.testing.assert_allclose(wiener_dft(x), wiener_dft(x, sigma), atol=1e-12)


def hand_made_photos() -> np.ndarray:
    """Three 4x5 photos; the first has a clipped flat area (255, 255 side by side in red) and
    a lone 255 pixel in green (not clipped: no equal neighbour)."""
    photos = RNG.integers(20, 200, (3, 4, 5, 3)).astype(np.uint8)
    photos[0, 1, 1:3, 0] = 255
    photos[0, 3, 4, 1] = 255
    return photos


def test_saturated_pixels_are_flat_clipped_areas() -> None:
    photos = hand_made_photos()
    expected = np.zeros(photos.shape, bool)
    expected[0, 1, 1:3, 0] = True
    np.testing.assert_array_equal(saturated(photos), expected)


def test_the_ml_estimate_is_chen_2008_by_hand() -> None:
    """K = sum_k W_k I_k / sum_k I_k^2 per pixel and channel, the saturated pixels left out."""
    photos = hand_made_photos()
    residuals = RNG.normal(0, 2, (3, 3, 4, 5)).astype(np.float32)
    sums = FingerprintSums.empty((4, 5)).add(photos, residuals)
    expected = np.zeros((3, 4, 5))
    for c, y, x in itertools.product(range(3), range(4), range(5)):
        num = den = 0.0
        for k in range(3):
            if c == 0 and k == 0 and y == 1 and x in (1, 2):
                continue  # clipped
            i = float(photos[k, y, x, c])
            num += float(residuals[k, c, y, x]) * i
            den += i * i
        expected[c, y, x] = num / den
    np.testing.assert_allclose(sums.estimate(), expected, rtol=1e-6)
    assert sums.count == 3
    half = FingerprintSums.empty((4, 5)).add(photos[:1], residuals[:1])
    rest = FingerprintSums.empty((4, 5)).add(photos[1:], residuals[1:])
    np.testing.assert_allclose((half + rest).estimate(), expected, rtol=1e-6)


def test_the_cross_correlation_is_circular_and_normalised_by_hand() -> None:
    a, b = RNG.normal(0, 1, (5, 6)), RNG.normal(0, 1, (5, 6))
    a0, b0 = a - a.mean(), b - b.mean()
    norm = np.sqrt((a0**2).sum() * (b0**2).sum())
    expected = np.zeros((5, 6))
    for s1, s2 in itertools.product(range(5), range(6)):
        expected[s1, s2] = sum(
            a0[i, j] * b0[(i + s1) % 5, (j + s2) % 6] for i in range(5) for j in range(6)
        )
    np.testing.assert_allclose(cross_correlation(a, b), expected / norm, atol=1e-12)
    rolled = np.roll(b, (2, 3), axis=(0, 1))  # b shifted by (2, 3): the peak moves there
    rho = cross_correlation(b, rolled)
    assert np.unravel_index(rho.argmax(), rho.shape) == (2, 3) and rho[2, 3] == pytest.approx(1)


def pce_by_hand(rho: np.ndarray, peak: tuple[int, int], excluded: set) -> float:
    """sign(rho_peak) rho_peak^2 / mean of rho^2 over the positions not excluded."""
    rest = [rho[p] ** 2 for p in itertools.product(*map(range, rho.shape)) if p not in excluded]
    return float(np.sign(rho[peak]) * rho[peak] ** 2 / np.mean(rest))


def test_the_pce_leaves_out_the_peaks_neighbours_across_the_corner() -> None:
    """The peak at zero shift is the corner [0, 0]; its 3x3 neighbourhood is (-1, 0, 1) x
    (-1, 0, 1) mod 12: the four corners of the plane. A slice [-1:2] would be empty there and
    leave out nothing (prnu-python's pce)."""
    rho = RNG.normal(0, 0.01, (12, 12))
    rho[0, 0] = 0.5
    for p in ((11, 11), (0, 11), (11, 0), (1, 1), (11, 1)):
        rho[p] = 0.2  # the peak's spread, which must not count as noise
    corner = {((a % 12), (b % 12)) for a in (-1, 0, 1) for b in (-1, 0, 1)}
    got = pce(rho, search=(0, 0), neighbourhood=3)
    assert float(got.pce) == pytest.approx(pce_by_hand(rho, (0, 0), corner), rel=1e-10)
    assert float(got.pce) > 3 * pce_by_hand(rho, (0, 0), set())  # nothing left out: far lower
    assert got.shift.tolist() == [0, 0] and float(got.rho) == 0.5


def test_the_pce_finds_a_peak_near_the_border_when_searching_every_shift() -> None:
    rho = RNG.normal(0, 0.01, (12, 10))
    rho[11, 5] = 0.4  # shift (-1, 5)
    rho[0, 5] = rho[10, 4] = 0.1
    near = {(a % 12, b) for a in (10, 11, 12) for b in (4, 5, 6)}
    got = pce(rho, search=None, neighbourhood=3)
    assert got.shift.tolist() == [-1, 5]
    assert float(got.pce) == pytest.approx(pce_by_hand(rho, (11, 5), near), rel=1e-10)
    aligned = pce(rho, search=(0, 0), neighbourhood=3)  # aligned: the zero shift only
    assert aligned.shift.tolist() == [0, 0] and float(aligned.pce) < 60


def test_identification_and_detection_scores_by_hand() -> None:
    """3 photos against 4 devices (two models of two devices): the highest PCE names the
    device; pairs at or above 60 are matches; the other devices split into the photo's own
    model's and the other model's."""
    pce = np.array(
        [
            [900.0, 70.0, 1.0, -2.0],  # device 0: right, but its sibling also reaches 60
            [3.0, 40.0, 80.0, 0.5],  # device 1: another model's device scores highest
            [-1.0, 2.0, 5.0, 61.0],  # device 3: right
        ]
    )
    got = scores(pce, np.array([0, 1, 3]), ["A", "A", "B", "B"], 60.0)
    assert got["identification"] == {"accuracy": 2 / 3, "correct": 2, "model_accuracy": 2 / 3}
    det = got["detection"]
    assert det["tpr"] == 2 / 3  # 900 and 61 of 900, 40, 61
    assert det["fpr_same_model"] == 1 / 3  # 70 of 70, 3, 5
    assert det["fpr_other_models"] == 1 / 6  # 80 of 1, -2, 80, 0.5, -1, 2
    assert det["fpr"] == 2 / 9
    # AUC: P(own > other) over the 3 x 9 pairs: 900 beats all 9, 40 and 61 beat 7 each
    assert det["auc"] == pytest.approx((9 + 7 + 7) / 27)
    assert got["pce"]["own"]["median"] == 61.0


# -- SimCam cameras --------------------------------------------------------------------------

SHOTS, SIZE, ENROL = 10, (160, 160), 8


@pytest.fixture(scope="module")
def cameras(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """The tiny preset's 6 devices, 10 shots of 160x160, with a 5% PRNU: a 160x160 photo
    then carries about the PRNU energy (PCE ~ pixels x correlation^2) of a 768x1024 photo of
    the default preset's 0.8% behind its raw noise reduction, so the test stays small."""
    root = tmp_path_factory.mktemp("prnu")
    preset = root / "strong-prnu.yaml"
    preset.write_text("extends: tiny\nall_models:\n  sensor: {prnu: 0.05}\n")
    out = root / "work" / dataset_name(preset, SHOTS, SIZE, 1)
    return simulate(preset, out, shots=SHOTS, seed=1, size=SIZE, workers=1, progress=False)


def split_photos(manifest: Manifest) -> tuple[dict[str, list[Path]], list[tuple[str, Path]]]:
    """Each device's first 8 shots to enrol, its last 2 to test."""
    enrol: dict[str, list[Path]] = {}
    probes = []
    for r in manifest:
        if int(r.shot) < ENROL:
            enrol.setdefault(r.device, []).append(manifest.abspath(r))
        else:
            probes.append((r.device, manifest.abspath(r)))
    return enrol, probes


def test_a_photo_matches_its_own_device_far_above_60_and_no_other(cameras: Manifest) -> None:
    enrol, probes = split_photos(cameras)
    prints = enrol_devices(enrol, workers=1)
    devices = list(prints)
    table = pce_table([p for _, p in probes], np.stack([prints[d][0] for d in devices]), workers=1)
    own = np.array([devices.index(d) for d, _ in probes])
    mine = table[np.arange(len(probes)), own]
    others = np.where(np.eye(len(devices), dtype=bool)[own], -np.inf, table)
    assert mine.min() > 200, mine  # far above the threshold of 60
    assert others.max() < 60, others.max()
    assert len(probes) == 12 and all(prints[d][1] == ENROL for d in devices)


def test_enrol_and_match_files_over_two_processes(cameras: Manifest, tmp_path: Path) -> None:
    enrol, probes = split_photos(cameras)
    device = "Kairo_DX-50_1"
    folder = tmp_path / device
    folder.mkdir()
    for p in enrol[device]:
        shutil.copy(p, folder / p.name)
    fp = prnu_enroll(folder, device, tmp_path / "fps" / device, min_images=ENROL, workers=2)
    assert fp.path == tmp_path / "fps" / f"{device}.safetensors"
    card = load_fingerprint(fp.path).card
    assert card["device"] == device and card["images"] == ENROL
    assert card["image_size"] == list(SIZE) and card["residual"]["wavelet"] == "db4"
    alone = enrol_devices({device: enrol[device]}, workers=1)[device][0]
    np.testing.assert_allclose(load_fingerprint(fp.path).k, alone, rtol=1e-4, atol=1e-7)
    other = next(d for d in enrol if d != device)
    prnu_enroll(folder.parent / device, other, tmp_path / "fps" / "copy", min_images=ENROL)
    mine = next(p for d, p in probes if d == device)
    result = prnu_match(mine, tmp_path / "fps")
    assert result.device == device and result.matches[0].pce > 60
    crop = load_rgb(mine)[8:152, 4:156]  # a centred 152x144 crop: compared on the centre
    cropped = prnu_match(crop, tmp_path / "fps")
    assert cropped.device == device and len(cropped.notes) == 2


def test_the_cli_fails_in_one_line(
    cameras: Manifest, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    enrol, _ = split_photos(cameras)
    photos = [p for paths in enrol.values() for p in paths][:11]
    few, odd, broken = tmp_path / "few", tmp_path / "odd", tmp_path / "broken"
    for folder, chosen in ((few, photos[:3]), (odd, photos[:10]), (broken, photos[:10])):
        folder.mkdir()
        for p in chosen:
            shutil.copy(p, folder / p.name)
    save_image(odd / "zz-resized.png", load_rgb(photos[10])[:120])
    (broken / "zz-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    out = tmp_path / "fp.safetensors"
    enroll = ("prnu", "enroll")
    line = cli_error(capsys, monkeypatch, *enroll, few, "--device", "d", "--out", out)
    assert "3 photos" in line and "at least 10" in line
    line = cli_error(capsys, monkeypatch, *enroll, odd, "--device", "d", "--out", out)
    assert "zz-resized.png: 160x120, not the 160x160" in line and "one sensor geometry" in line
    line = cli_error(
        capsys, monkeypatch, *enroll, broken, "--device", "d", "--out", out, "--workers", "1"
    )
    assert "zz-broken.jpg" in line
    assert not out.exists()
    line = cli_error(capsys, monkeypatch, "prnu", "match", photos[0], "--fingerprints", few)
    assert "no fingerprints" in line
    line = cli_error(capsys, monkeypatch, "prnu", "match", photos[0], "--fingerprints", photos[1])
    assert "not a readable safetensors file" in line


def test_the_prnu_section_and_the_matrix_on_a_tiny_run(cameras: Manifest, tmp_path: Path) -> None:
    """A run with a ``prnu:`` section and ``robustness.prnu``: every device identified; a
    photo spoofed to another model (PGD toward the next one, LLCM away from its own) keeps
    its source PRNU and is caught; the matrix's numbers are those of the same run without
    ``robustness.prnu``."""
    work = Path(cameras.root).parent
    config = {
        "name": "prnu-tiny",
        "seed": 1,
        "workdir": str(work),
        "data": {
            "source": "simulate",
            "preset": str(work.parent / "strong-prnu.yaml"),
            "shots": SHOTS,
            "size": list(SIZE),
        },  # fmt: skip
        "split": {"protocol": "bondi", "eval_scene_frac": 0.2, "val_scene_frac": 0.1},
        "patches": {"protocol": "bondi", "count": 4},
        "train": {"epochs": 1},
        "svm": {"enabled": False},
        "prnu": {"enrol": ENROL, "workers": 1},
        "robustness": {
            "attacks": ["pgd", "llcm"],
            "eps": 16,
            "params": {"pgd": {"steps": 10}},
            "patches": 8,
            "prnu": {"photos": 2, "enrol": ENROL},
        },
    }
    runs = tmp_path / "runs"
    metrics = run_experiment(config, runs_dir=runs, progress=False, log=lambda _: None)
    prnu = metrics["prnu"]
    assert prnu["identification"]["accuracy"] == 1.0 and prnu["detection"]["fpr"] == 0.0
    assert prnu["detection"]["auc"] == 1.0 and prnu["photos"] == 12
    assert (runs / "prnu-tiny" / "prnu" / "fingerprints" / "Halden_H20_0.safetensors").is_file()
    cells = metrics["robustness"]["prnu"]["rows"]["bondi2017"]
    for cell in cells.values():  # every photo keeps its PRNU: a spoof is caught
        assert cell["n"] == 2 and cell["clean_matched"] == 2
        assert cell["caught"] == cell["spoofed"] and cell["claimed_matched"] == 0
        assert all(photo["pce_source"] > 60 for photo in cell["photos"])
    assert sum(c["spoofed"] for c in cells.values()) >= 1
    acted = [p for c in cells.values() for p in c["photos"] if p["blocks"]]
    assert acted and all(p["pce_source_blocks"] is not None for p in acted)
    assert "| 6 (fingerprints of 8 photos) | 12 of 160x160 | 100.0% (12 / 12) |" in prnu_table(
        metrics
    )
    assert "| bondi2017 | llcm | 2 / 2 |" in prnu_markdown(metrics)
    html = (runs / "prnu-tiny" / "report.html").read_text()
    assert "PRNU device identification" in html and "does an attack remove" in html
    robustness = {k: v for k, v in metrics["robustness"].items() if k != "prnu"}
    config["robustness"].pop("prnu")
    again = run_experiment(config, runs_dir=runs, progress=False, log=lambda _: None)
    assert json.dumps(again["robustness"], sort_keys=True) == json.dumps(robustness, sort_keys=True)
