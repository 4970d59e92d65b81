"""Marra 2017's SPAM detector (Bondi 2017's hand-crafted baseline): its features, what it
learns from camera noise alone, its checkpoint, and the attacks that refuse or take it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from camtrace.attacks import PGD, Square
from camtrace.attacks.generative import train_generator
from camtrace.errors import CamtraceError
from camtrace.evaluation.traces import residual_cooccurrence
from camtrace.models import build, load_detector, save_detector
from camtrace.models.marra2017 import SPAM_DIM, spam_features
from camtrace.models.svm import OvOLinearSVM

CLASSES = ["Maker_A", "Maker_B"]


def scenes(n: int, seed: int) -> np.ndarray:
    """(n, 64, 64, 3) smooth random scenes: content far above the truncation of [-2, 2]."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(30, 220, (n, 8, 8, 3))
    return np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)


def shoot(n: int, seed: int, smoothed: bool) -> np.ndarray:
    """Scenes plus sensor noise of sigma 1.5, white for one camera and spatially smoothed
    (3x3 mean, rescaled to the same sigma: an in-camera denoiser's trace) for the other."""
    rng = np.random.default_rng(seed + 1)
    noise = rng.normal(0, 1.5, (n, 64, 64, 3))
    if smoothed:
        noise = uniform_filter(noise, size=(1, 3, 3, 1)) * 3.0
    return np.clip(np.rint(scenes(n, seed) + noise), 0, 255).astype(np.uint8)


def fitted(train_a: np.ndarray, train_b: np.ndarray) -> torch.nn.Module:
    det = build("marra2017", CLASSES)
    patches = np.concatenate([train_a, train_b])
    labels = np.repeat([0, 1], [len(train_a), len(train_b)])
    det.fit_preprocessing(torch.from_numpy(patches))
    x = torch.from_numpy(patches).permute(0, 3, 1, 2).float()
    det.svm = OvOLinearSVM.fit(det.embed(x).numpy(), labels, 2, C=0.1)
    return det.eval()


def accuracy(det: torch.nn.Module, a: np.ndarray, b: np.ndarray) -> float:
    x = torch.from_numpy(np.concatenate([a, b])).permute(0, 3, 1, 2).float()
    y = np.repeat([0, 1], [len(a), len(b)])
    return float((det(x).argmax(1).numpy() == y).mean())


def test_features_are_400_normalised_co_occurrences_equal_per_image_and_in_a_batch() -> None:
    batch = shoot(5, 0, smoothed=False)
    f = spam_features(batch)
    assert f.shape == (5, SPAM_DIM) == (5, 400)
    np.testing.assert_allclose(f.reshape(5, 16, 25).sum(2), 1.0, atol=1e-12)
    for k in range(5):  # the audit's per-image features are the detector's
        np.testing.assert_array_equal(residual_cooccurrence(batch[k]), f[k])
    flat = np.full((1, 64, 64, 3), 128, np.uint8)  # no residual: every pair at (0, 0)
    assert np.all(spam_features(flat).reshape(16, 25)[:, 12] == 1.0)
    with pytest.raises(CamtraceError, match="spam_features"):
        spam_features(np.zeros((2, 64, 64), np.uint8))


def test_svms_on_spam_tell_white_from_denoised_noise_and_not_two_white_cameras() -> None:
    """A trace 1.5 grey levels deep separates the cameras on unseen scenes; two cameras with
    the same noise stay near chance (the features see traces, not the scenes)."""
    det = fitted(shoot(120, 0, smoothed=False), shoot(120, 1, smoothed=True))
    assert accuracy(det, shoot(60, 2, smoothed=False), shoot(60, 3, smoothed=True)) > 0.95
    same = fitted(shoot(120, 0, smoothed=False), shoot(120, 1, smoothed=False))
    assert accuracy(same, shoot(60, 2, smoothed=False), shoot(60, 3, smoothed=False)) < 0.7


def test_checkpoint_round_trip_and_attacks(tmp_path: Path) -> None:
    det = fitted(shoot(60, 0, smoothed=False), shoot(60, 1, smoothed=True))
    path = save_detector(det, tmp_path / "marra.safetensors", svm_only=True)
    back = load_detector(path)
    x = torch.from_numpy(shoot(8, 5, smoothed=True)).permute(0, 3, 1, 2).float()
    assert torch.equal(back(x), det(x)) and sum(p.numel() for p in back.parameters()) == 0
    images = x.to(torch.uint8)
    with pytest.raises(CamtraceError, match="no gradient; attack it with square"):
        PGD(eps=4, alpha=1, steps=2)(back, images, target=0)
    with pytest.raises(CamtraceError, match="mislgan training: .*no gradient"):
        train_generator("mislgan", back, shoot(4, 6, False), shoot(2, 7, False), 0, None, tmp_path)
    adv, info = Square(eps=8, queries=20, seed=0)(back, images, target=0)
    assert adv.dtype == torch.uint8 and (adv.int() - images.int()).abs().max() <= 8
    assert info.success.shape == (8,)
