"""Synthetic-image sources (SpoC's set S) and the GAN-image detectors Spec and Xception."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from camtrace.cli import app
from camtrace.data.codec import save_image
from camtrace.data.images import load_rgb
from camtrace.data.manifest import Manifest, Record
from camtrace.data.patch_store import build_patch_store
from camtrace.data.patches import get_protocol
from camtrace.data.simcam.natural import pink_noise
from camtrace.data.synthetic import REAL, SYNTHETIC, real_vs_synthetic, source_model
from camtrace.errors import CamtraceError
from camtrace.models import build
from camtrace.models.gan_sources import HELD_OUT, SOURCES, build_source
from camtrace.models.zhang2019 import mean_residual_spectrum, residual_spectrum, spec_input
from camtrace.training.engine import PatchSet, TrainConfig, evaluate_loss, train
from camtrace.training.gan_sources import SourceConfig, generate, make_synthetic
from camtrace.workflows.plots import spectra_figure

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = SourceConfig(
    size=16, scale=2, width=4, crops=16, iterations=2, batch_size=4, train=3, val=2, eval=2
)


def natural_images(n: int, size: int, seed: int) -> np.ndarray:
    """uint8 (n, size, size, 3) fields with a natural 1/f^2 power spectrum."""
    rng = np.random.default_rng(seed)
    fields = [pink_noise(rng, (size, size), exponent=1.0) for _ in range(3 * n)]
    grey = 128 + 40 * np.stack(fields).reshape(n, 3, size, size).transpose(0, 2, 3, 1)
    return np.clip(grey, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """A SimCam-like split manifest: two camera models, 48x48 PNG photos, scene-disjoint."""
    root = tmp_path_factory.mktemp("real")
    records = []
    for k, image in enumerate(natural_images(12, 48, seed=1)):
        model = f"Halden_H{20 + k % 2}"
        split = ("train", "train", "val", "eval")[k % 4]
        path = save_image(root / f"{model}_{k}.png", image)
        records.append(Record(str(path), "Halden", model, "0", f"nat{k:04d}", str(k), split))
    return Manifest(records, root)


@pytest.fixture(scope="module")
def synthetic(real: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return make_synthetic(real, tmp_path_factory.mktemp("synthetic"), config=TINY, progress=False)


@pytest.mark.parametrize("name", sorted(SOURCES))
@pytest.mark.parametrize("size", [16, 32])
def test_every_source_makes_uint8_images_of_the_requested_size(name: str, size: int) -> None:
    torch.manual_seed(0)
    generator = build_source(name, size, width=4).eval()
    inputs = natural_images(3, size, seed=0) if generator.conditional else None
    images = generate(generator, 3, inputs)
    assert images.dtype == np.uint8 and images.shape == (3, size, size, 3)
    assert images.std() > 0  # not a constant image


def test_image_sizes_that_no_doubling_reaches_are_refused() -> None:
    with pytest.raises(CamtraceError, match="size 48 must be 4 times a power of two"):
        build_source("dcgan", 48)
    with pytest.raises(CamtraceError, match="unknown synthetic source 'stylegan'"):
        build_source("stylegan", 32)


def nyquist_peak(spectrum: np.ndarray) -> float:
    """Mean |DFT| at the three half-sampling-rate bins over the mean of their 8 neighbours on
    the frequency grid's axes and diagonal (a ratio; 1 for a smooth spectrum)."""
    c = spectrum.shape[0] // 2  # centred: bin 0 is -1/2 cycle per pixel, bin c is DC
    peaks = [spectrum[c, 0], spectrum[0, c], spectrum[0, 0]]
    around = [spectrum[c, 1], spectrum[c, -1], spectrum[1, c], spectrum[-1, c]]
    around += [spectrum[0, 1], spectrum[1, 0], spectrum[0, -1], spectrum[-1, 0]]
    return float(np.mean(peaks) / np.mean(around))


@pytest.mark.parametrize("name", ["dcgan", "autoencoder", "pixelshuffle"])
def test_two_times_upsampling_leaves_a_peak_at_half_the_sampling_rate(name: str) -> None:
    """Stride-2 transposed convolutions and sub-pixel convolutions make every output pixel
    one of 2x2 phases with its own weights: a period of 2 px, a peak at 1/2 cycle per pixel
    in the residual spectrum, which natural images of the same size do not have."""
    torch.manual_seed(0)
    size = 32
    generator = build_source(name, size, width=4).eval()
    inputs = natural_images(64, size, seed=2) if generator.conditional else None
    made = mean_residual_spectrum(generate(generator, 64, inputs))
    photos = mean_residual_spectrum(natural_images(64, size, seed=3))
    assert nyquist_peak(made) > 2 * nyquist_peak(photos)
    assert nyquist_peak(photos) < 1.5


def test_residual_spectrum_of_a_cosine_is_two_bins_weighted_by_the_laplacian() -> None:
    """x = 100 + A cos(2 pi k x / N): the mean is removed (the high-pass has no DC response),
    the cosine gives A N^2 / 2 at (0, +-k / N) times the response 1 - (1 + cos(2 pi k / N)) / 2."""
    n, k, amplitude = 32, 5, 20.0
    column = 100 + amplitude * np.cos(2 * np.pi * k * np.arange(n) / n)
    x = torch.tensor(np.broadcast_to(column, (1, 3, n, n)).copy(), dtype=torch.float32)
    spectrum = residual_spectrum(x)[0, 0].double().numpy()
    response = 1 - (1 + math.cos(2 * math.pi * k / n)) / 2
    expected = np.zeros((n, n))
    expected[n // 2, n // 2 + k] = expected[n // 2, n // 2 - k] = amplitude * n * n / 2 * response
    # float32 FFT of values ~100 on 1024 bins: errors of a few 1e-4 of the peak
    np.testing.assert_allclose(spectrum, expected, atol=1e-3 * expected.max())
    z = spec_input(x)[0, 0].double().numpy()
    top = math.log(1 + 255 * 2 * n * n)  # the largest |DFT| a uint8 patch can give
    np.testing.assert_allclose(z, 2 * np.log1p(expected) / top - 1, atol=1e-3)


def test_make_synthetic_writes_each_source_by_split_and_holds_one_out(
    synthetic: Manifest, real: Manifest
) -> None:
    by_model: dict[str, dict[str, int]] = {}
    for r in synthetic:
        counts = by_model.setdefault(r.model, {})
        counts[r.split] = counts.get(r.split, 0) + 1
        assert load_rgb(synthetic.abspath(r)).shape == (TINY.size, TINY.size, 3)
    trained = {"train": TINY.train, "val": TINY.val, "eval": TINY.eval}
    assert by_model == {
        source_model(name): ({"eval": TINY.eval} if name == HELD_OUT else trained)
        for name in SOURCES
    }
    assert source_model("dcgan") == "Synthetic_DCGAN"
    assert len({r.scene for r in synthetic}) == len(synthetic)  # no scene in two splits
    again = make_synthetic(real, synthetic.root, config=TINY, progress=False)
    assert again.digest() == synthetic.digest()


def test_make_synthetic_into_a_relative_folder_finds_its_images(
    real: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # `camtrace run` passes the workdir as given: often relative
    made = make_synthetic(
        real, Path("work") / "synthetic", ("dcgan",), (), config=TINY, progress=False
    )
    assert all(made.abspath(r).is_file() for r in made)


def test_make_synthetic_refuses_a_manifest_without_training_rows(
    real: Manifest, tmp_path: Path
) -> None:
    unsplit = real.filter(lambda r: r.split != "train")
    with pytest.raises(CamtraceError, match="no 'train' rows.*camtrace split"):
        make_synthetic(unsplit, tmp_path, config=TINY, progress=False)
    with pytest.raises(CamtraceError, match=r"unknown synthetic sources \['stylegan'\]"):
        make_synthetic(real, tmp_path, sources=("stylegan",), config=TINY, progress=False)
    with pytest.raises(CamtraceError, match=r"held-out sources \['pixelshuffle'\] are not"):
        make_synthetic(real, tmp_path, sources=("dcgan",), config=TINY, progress=False)


def test_real_and_synthetic_images_flow_through_the_patch_pipeline(
    synthetic: Manifest, real: Manifest, tmp_path: Path
) -> None:
    both = real_vs_synthetic(real, synthetic)
    both.save(tmp_path / "detection")
    loaded = Manifest.load(tmp_path / "detection")
    assert loaded.models == [REAL, SYNTHETIC]
    protocol = get_protocol("gan", size=TINY.size, count=2)
    store = build_patch_store(loaded, tmp_path / "store", protocol, workers=1, progress=False)
    assert store.classes == [REAL, SYNTHETIC]
    instance = store.meta["instance"]
    held_out = np.flatnonzero(instance == source_model(HELD_OUT))
    assert len(held_out) == TINY.eval  # one patch per synthetic image, kept apart by source
    assert set(store.meta["split"][held_out]) == {"eval"}
    first = held_out[0]
    source = store.meta["source"][first]
    np.testing.assert_array_equal(store.patches(np.array([first]))[0], load_rgb(source))
    assert set(store.labels(held_out, [REAL, SYNTHETIC])) == {1}


def toy_patches(n: int, size: int, seed: int) -> PatchSet:
    """Natural fields (label 0) and the same fields with the two phases of a 2-px checkerboard
    scaled by 1 -+ 5% (label 1): what uneven up-sampling kernels do, a replica of the scene's
    spectrum around (1/2, 1/2) cycle per pixel, a few grey levels in the pixels."""
    photos = natural_images(n, size, seed)
    yy, xx = np.indices((size, size))
    phase = 1 + 0.05 * (2 * ((yy + xx) % 2) - 1)
    fakes = np.clip(photos * phase[None, :, :, None], 0, 255).round().astype(np.uint8)
    patches = torch.from_numpy(np.concatenate([photos, fakes]))
    return PatchSet(patches, torch.cat([torch.zeros(n), torch.ones(n)]).long())


def test_spec_learns_an_upsampling_trace(tmp_path: Path) -> None:
    torch.manual_seed(0)
    detector = build("spec", [REAL, SYNTHETIC], patch_size=32)
    config = TrainConfig(epochs=8, batch_size=16, lr=1e-3, optimizer="adam", weight_decay=0)
    train_set, val_set = toy_patches(128, 32, seed=4), toy_patches(32, 32, seed=5)
    train(detector, train_set, val_set, config, tmp_path, progress=False)
    _, accuracy = evaluate_loss(detector, val_set, config, "fp32", torch.device("cpu"))
    assert accuracy >= 0.9  # chance is 0.5


def test_spectra_figure_has_one_panel_per_set() -> None:
    torch.manual_seed(0)
    generator = build_source("dcgan", 16, width=4).eval()
    sets = {"SimCam": natural_images(4, 16, seed=6), "DCGAN": generate(generator, 4)}
    fig = spectra_figure(sets, "residual spectra")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["SimCam", "DCGAN"]
    with pytest.raises(CamtraceError, match="no image sets"):
        spectra_figure({}, "empty")
    with pytest.raises(CamtraceError, match=r"expected \(N, H, W, 3\) uint8"):
        mean_residual_spectrum(np.zeros((2, 16, 16), np.uint8))


def test_synthesize_command_writes_sources_and_the_detection_manifest(
    real: Manifest, tmp_path: Path
) -> None:
    real.save(tmp_path / "real")
    args = ["synthesize", str(tmp_path / "real"), "--out", str(tmp_path / "synthetic")]
    args += ["--size", "16", "--iterations", "1", "--train-images", "2", "--val-images", "1"]
    args += ["--eval-images", "1", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    made = Manifest.load(tmp_path / "synthetic")
    assert len(made) == 3 * (2 + 1 + 1) + 1  # three training sources, one held out
    detection = Manifest.load(tmp_path / "synthetic" / "detection")
    assert detection.models == [REAL, SYNTHETIC] and len(detection) == len(real) + len(made)
