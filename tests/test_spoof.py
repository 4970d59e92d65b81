"""Whole-image attacks on a small trained Bondi2017 + SVM detector: the stored file (PNG, or
JPEG with a camera's tables) is identified as the target, content-dependent voters are
followed across rounds, and bad inputs give one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from camtrace.attacks import make_attack
from camtrace.data.codec import Jpeg
from camtrace.data.images import load_rgb
from camtrace.errors import CamtraceError
from camtrace.models import build, load_detector, save_detector
from camtrace.models.inference import embed_patches, identify
from camtrace.models.svm import OvOLinearSVM
from camtrace.training.engine import PatchSet, TrainConfig, train
from camtrace.workflows.spoof import attack_file, attack_image

CLASSES = ["Halden_H20", "Kairo_DX-50", "Nimbus_N300"]
K = 8  # voting patches per image (Bondi's top-K by quality), fewer than the 20 grid blocks
SOURCE, TARGET = "Halden_H20", "Nimbus_N300"


pytestmark = pytest.mark.usefixtures("one_thread")


def shoot(scene: np.ndarray, camera: int) -> np.ndarray:
    """A toy camera: the scene plus the model's +-8 line pattern (rows, columns or checks)."""
    y, x = np.mgrid[: scene.shape[0], : scene.shape[1]]
    trace = (y, x, x + y)[camera] % 2 * 16 - 8
    return np.clip(scene.astype(np.int16) + trace[..., None], 0, 255).astype(np.uint8)


def training_patches(n: int, seed: int) -> PatchSet:
    rng = np.random.default_rng(seed)
    scenes = (data.astronaut(), data.chelsea(), data.rocket())
    patches, labels = [], []
    for camera in range(len(CLASSES)):
        for scene in scenes:
            shot = shoot(scene, camera)
            for y, x in zip(
                rng.integers(0, shot.shape[0] - 64, n), rng.integers(0, shot.shape[1] - 64, n)
            ):
                patches.append(shot[y : y + 64, x : x + 64])
                labels.append(camera)
    return PatchSet(torch.from_numpy(np.stack(patches)), torch.tensor(labels))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bondi2017 trained for a few seconds on the toy cameras, with its SVM battery, saved
    with a top-8 Bondi protocol in its card."""
    root = tmp_path_factory.mktemp("spoof")
    torch.manual_seed(0)
    det = build("bondi2017", CLASSES)
    train_set, val_set = training_patches(16, seed=0), training_patches(4, seed=1)
    det.fit_preprocessing(train_set.patches)
    config = TrainConfig(
        epochs=3,
        batch_size=32,
        optimizer="adam",
        lr=1e-3,
        weight_decay=0.0,
        precision="fp32",
        device="cpu",
    )
    train(det, train_set, val_set, config, root / "train", progress=False)
    det.eval()
    features = embed_patches(det, train_set.patches.numpy())
    det.svm = OvOLinearSVM.fit(features, train_set.labels.numpy(), len(CLASSES), C=1.0)
    det.card = {"patches": {"name": "bondi", "size": 64, "count": K}}
    return save_detector(det, root / "detector.safetensors")


@pytest.fixture(scope="module")
def detector(checkpoint: Path):
    return load_detector(checkpoint)


def scene() -> np.ndarray:
    """A 256x320 scene never seen in training, its range kept within 32-223 (no clipping)."""
    return (data.coffee()[:256, :320] * 0.75 + 32).astype(np.uint8)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return shoot(scene(), CLASSES.index(SOURCE))


def test_png_file_is_identified_as_the_target(detector, checkpoint, photo, tmp_path) -> None:
    assert identify(detector, photo).model == SOURCE
    out = tmp_path / "spoofed.png"
    result = attack_file(detector, photo, out, make_attack("pgd", eps=8, alpha=2, steps=10), TARGET)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fresh = load_detector(checkpoint)  # as a later `camtrace identify` would
    assert identify(fresh, out).model == TARGET
    assert result.success and result.after.model == TARGET and result.before.model == SOURCE
    stored = load_rgb(out)
    assert np.abs(stored.astype(int) - photo).max() == result.linf <= 8
    assert 30 < result.psnr < 60
    changed = {
        (y, x)
        for y in range(0, 256, 64)
        for x in range(0, 320, 64)
        if (stored[y : y + 64, x : x + 64] != photo[y : y + 64, x : x + 64]).any()
    }
    assert len(changed) <= result.attacked <= 20  # only attacked blocks differ
    assert result.to_dict()["after"]["model"] == TARGET


def test_jpeg_with_the_target_cameras_tables(detector, photo, tmp_path) -> None:
    camera_file = tmp_path / "camera.jpg"  # stands for a file from the target camera
    Image.fromarray(photo).save(camera_file, quality=97, subsampling=0)
    tables = Jpeg.from_file(camera_file, subsampling="4:4:4")
    out = tmp_path / "spoofed.jpg"
    result = attack_file(
        detector,
        photo,
        out,
        make_attack("pgd", eps=8, alpha=2, steps=10, seed=0),
        TARGET,
        jpeg=tables,
    )
    with Image.open(out) as im:
        assert im.format == "JPEG"
        assert [list(im.quantization[i]) for i in sorted(im.quantization)] == [
            list(t) for t in tables.qtables
        ]
    assert identify(detector, out).model == TARGET and result.success
    assert result.attack["jpeg_success_rate"] > 0


TRAPS = [(192, 0), (192, 64), (192, 128), (192, 192), (192, 256), (128, 0)]


def test_voters_that_depend_on_content_are_followed_across_rounds(detector) -> None:
    """Six blocks of bright (244) and dark (20) line pairs top the quality ranking; the
    camera's +8 lines put a quarter of their pixels at 252, which the attack pushes to 255
    (saturated), so they leave the top-K and unattacked blocks take their place."""
    trapped = scene()
    for y, x in TRAPS:
        trapped[y : y + 64, x : x + 64] = np.where(np.arange(64)[:, None, None] % 4 < 2, 244, 20)
    photo = shoot(trapped, CLASSES.index(SOURCE))
    clean = identify(detector, photo)
    assert clean.model == SOURCE and set(TRAPS) <= {tuple(p) for p in clean.positions.tolist()}
    bim = make_attack("bim", eps=8, alpha=2, steps=10)
    _, once = attack_image(detector, photo, bim, TARGET, rounds=1)
    adv, result = attack_image(detector, photo, bim, TARGET, rounds=4)
    assert not once.success and result.success
    assert result.per_round[0] == K and len(result.per_round) >= 2
    voters = {tuple(p) for p in identify(detector, adv).positions.tolist()}
    assert not voters & set(TRAPS)  # the saturated blocks no longer vote...
    assert result.attacked > K  # ...and the blocks that replaced them were attacked too


def test_untargeted_attack_leaves_the_clean_verdict(detector, photo, tmp_path) -> None:
    result = attack_file(detector, photo, tmp_path / "u.png", "bim", target=None)
    assert result.target is None and result.success
    assert identify(detector, tmp_path / "u.png").model != SOURCE


def test_bad_inputs_give_one_line_errors(detector, photo, tmp_path) -> None:
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    small = tmp_path / "small.png"
    Image.fromarray(photo[:40, :40]).save(small)
    cases = [
        (lambda: attack_image(detector, not_image, "fgsm", TARGET), "not a readable image"),
        (lambda: attack_image(detector, small, "fgsm", TARGET), "smaller than"),
        (lambda: attack_image(detector, photo[:32, :32], "fgsm", TARGET), "smaller than"),
        (lambda: attack_image(detector, photo.astype(np.float32), "fgsm", TARGET), "uint8"),
        (
            lambda: attack_image(detector, photo, "fgsm", "Canon_EOS"),
            "Halden_H20, Kairo_DX-50, Nimbus_N300",
        ),
        (lambda: attack_image(detector, photo, "fgsm", 7), "not a class"),
        (lambda: attack_image(detector, photo, "cw", TARGET), "unknown attack"),
        (lambda: attack_file(detector, photo, tmp_path / "x.gif", "fgsm"), "image suffix"),
        (lambda: attack_file(detector, photo, tmp_path / "x.png", "fgsm", jpeg=90), ".jpg"),
    ]
    for call, message in cases:
        with pytest.raises(CamtraceError, match=message.replace(".", r"\.")) as err:
            call()
        assert "\n" not in str(err.value)
    assert not list(tmp_path.glob("x.*")) and not list(tmp_path.glob(".x.*"))
