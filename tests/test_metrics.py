"""Exact metric values on tiny hand-computed fixtures."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from camtrace.errors import CamtraceError
from camtrace.evaluation.metrics import (
    accuracy,
    classification_summary,
    confusion,
    image_labels,
    majority_vote,
    per_class_accuracy,
    psnr,
    psnr_batch,
    ssim,
    ssim_batch,
    voting_curve,
)

# Six patches, three Dresden-like models: rows of the confusion are
# Nikon_D70 [1, 1, 0], Canon_Ixus70 [0, 1, 0], Sony_H50 [1, 0, 2].
Y_TRUE = np.array([0, 0, 1, 2, 2, 2])
Y_PRED = np.array([0, 1, 1, 2, 2, 0])

# Two images interleaved: "img_a" votes 1, 2, 2, 1 (in extraction order), "img_b" votes 0, 0, 1.
IMAGE_IDS = np.array(["img_b", "img_a", "img_a", "img_b", "img_a", "img_a", "img_b"])
PATCH_PRED = np.array([0, 1, 2, 0, 2, 1, 1])
PATCH_TRUE = np.array([0, 2, 2, 0, 2, 2, 0])


def test_accuracy():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    assert accuracy(np.array([1, 1]), np.array([1, 1])) == 1.0


def test_confusion_counts_and_row_normalised():
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(confusion(Y_TRUE, Y_PRED, 3), expected)
    normalised = confusion(Y_TRUE, Y_PRED, 4, normalize=True)
    assert normalised.shape == (4, 4)
    np.testing.assert_allclose(normalised[:3, :3], [[0.5, 0.5, 0], [0, 1, 0], [1 / 3, 0, 2 / 3]])
    np.testing.assert_array_equal(normalised[3], 0)  # a class without samples stays zero


def test_per_class_accuracy_marks_empty_class_nan():
    result = per_class_accuracy(Y_TRUE, Y_PRED, 4)
    np.testing.assert_allclose(result[:3], [0.5, 1.0, 2 / 3])
    assert np.isnan(result[3])


def test_bad_labels_are_user_errors():
    with pytest.raises(CamtraceError, match="y_pred"):
        confusion(Y_TRUE, np.array([0, 1, 1, 2, 2, 3]), 3)
    with pytest.raises(CamtraceError, match="same length"):
        accuracy(Y_TRUE, Y_PRED[:-1])
    with pytest.raises(CamtraceError, match="integer"):
        accuracy(Y_TRUE.astype(float), Y_PRED)


def test_majority_vote_first_k_and_lowest_index_tie():
    ids, voted = majority_vote(PATCH_PRED, IMAGE_IDS, 3)
    assert ids.tolist() == ["img_a", "img_b"]
    assert voted.tolist() == [1, 0]  # img_a ties 2-2 between classes 1 and 2 -> lowest index
    assert majority_vote(PATCH_PRED, IMAGE_IDS, 3, k=1)[1].tolist() == [1, 0]
    assert majority_vote(PATCH_PRED, IMAGE_IDS, 3, k=3)[1].tolist() == [2, 0]
    assert majority_vote(PATCH_PRED, IMAGE_IDS, 3, k=100)[1].tolist() == [1, 0]


def test_majority_vote_tie_broken_by_scores_of_voting_patches_only():
    scores = np.zeros((len(PATCH_PRED), 3))
    scores[1] = [0.0, 0.6, 0.4]  # img_a patch 1 (votes 1)
    scores[2] = [0.0, 0.1, 0.9]  # img_a patch 2 (votes 2)
    scores[5] = [0.0, 5.0, 0.0]  # img_a patch 4: outside k=2, must not count
    # k=2: votes 1 and 2 tie; summed scores 0.7 for class 1, 1.3 for class 2 -> 2.
    assert majority_vote(PATCH_PRED, IMAGE_IDS, 3, k=2, scores=scores)[1].tolist() == [2, 0]
    # all patches: still a 2-2 tie, now class 1 sums 5.7 -> 1.
    assert majority_vote(PATCH_PRED, IMAGE_IDS, 3, scores=scores)[1].tolist() == [1, 0]
    with pytest.raises(CamtraceError, match="scores"):
        majority_vote(PATCH_PRED, IMAGE_IDS, 3, scores=scores[:, :2])
    with pytest.raises(CamtraceError, match="k"):
        majority_vote(PATCH_PRED, IMAGE_IDS, 3, k=0)


def test_majority_vote_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    image_ids = rng.integers(0, 20, size=300)
    pred = rng.integers(0, 4, size=300)
    for k in (1, 3, 7, None):
        ids, voted = majority_vote(pred, image_ids, 4, k=k)
        for image, label in zip(ids, voted, strict=True):
            patches = pred[image_ids == image][:k]
            counts = Counter(patches.tolist())
            top = max(counts.values())
            assert label == min(c for c, n in counts.items() if n == top)


def test_voting_curve():
    curve = voting_curve(PATCH_PRED, PATCH_TRUE, IMAGE_IDS, 3, ks=(1, 3, 4))
    assert curve == {1: 0.5, 3: 1.0, 4: 0.5}


def test_image_labels_must_agree():
    ids, labels = image_labels(PATCH_TRUE, IMAGE_IDS)
    assert ids.tolist() == ["img_a", "img_b"] and labels.tolist() == [2, 0]
    with pytest.raises(CamtraceError, match="img_b"):
        image_labels(np.array([0, 2, 2, 1, 2, 2, 0]), IMAGE_IDS)


def test_psnr_known_values():
    a = np.full((16, 16, 3), 100, dtype=np.uint8)
    assert psnr(a, a + 1) == pytest.approx(20 * np.log10(255), abs=1e-9)
    assert psnr(a, a + 1) == pytest.approx(48.13, abs=0.01)
    assert psnr(a, a) == float("inf")
    b = a.copy()
    b[:8] += 2  # MSE = 2 on half the pixels -> 10 log10(255^2 / 2)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 2))


def _wang_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 written out: Eq. 13 at every position where the 11x11 Gaussian window
    (sigma 1.5, unit sum) fits, with its weighted means and population (co)variances
    (Eqs. 14-16), averaged over positions (Eq. 17) and then over channels."""
    g = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    means = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        values = []
        for i in range(x.shape[0] - 10):
            for j in range(x.shape[1] - 10):
                px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
                cxy = (w * (px - mx) * (py - my)).sum()
                values.append(
                    (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
                )
        means.append(np.mean(values))
    return float(np.mean(means))


def test_ssim_is_wangs_gaussian_population_ssim():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, size=(16, 14, 3), dtype=np.uint8)
    b = np.clip(0.6 * a + 50 + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    reference = _wang_ssim(a, b)
    assert 0.1 < reference < 0.9
    # float64 sums in another order: agreement to rounding, far below the 1e-4 a table shows
    assert ssim(a, b) == pytest.approx(reference, abs=1e-9)
    # scikit-image's defaults (7x7 box window, sample covariance) are another number
    box = structural_similarity(a, b, channel_axis=-1, data_range=255)
    assert abs(box - reference) > 1e-3
    with pytest.raises(CamtraceError, match="at least 11x11"):
        ssim(a[:10], b[:10])


def test_ssim_identical_is_one_and_flat_images_exact():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    noisy = np.clip(a.astype(int) + rng.integers(-40, 41, size=a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, noisy) < 1.0
    # Flat images: only the luminance term is left, (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
    # with C1 = (0.01 * 255)^2 (Wang et al. 2004, Eq. 13).
    c1 = (0.01 * 255) ** 2
    flat_a = np.full((16, 16, 3), 100, dtype=np.uint8)
    flat_b = np.full((16, 16, 3), 110, dtype=np.uint8)
    assert ssim(flat_a, flat_b) == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1))


def test_batch_versions():
    rng = np.random.default_rng(2)
    a = rng.integers(1, 255, size=(3, 16, 16, 3), dtype=np.uint8)
    b = a.copy()
    b[1] += 1
    np.testing.assert_allclose(psnr_batch(a, b), [np.inf, 20 * np.log10(255), np.inf])
    s = ssim_batch(a, b)
    assert s.shape == (3,) and s[0] == pytest.approx(1.0) and s[1] < 1.0
    with pytest.raises(CamtraceError, match="uint8"):
        psnr(a[0].astype(np.float32), b[0])
    with pytest.raises(CamtraceError, match="shape"):
        psnr_batch(a, b[:2])


def test_classification_summary_is_strict_json():
    classes = ["Nikon_D70", "Canon_Ixus70", "Sony_H50", "Agfa_DC-504"]
    summary = classification_summary(Y_TRUE, Y_PRED, classes)
    assert summary["accuracy"] == pytest.approx(4 / 6)
    assert summary["n"] == 6
    assert summary["per_class"]["Nikon_D70"] == 0.5
    assert summary["per_class"]["Agfa_DC-504"] is None
    assert summary["confusion"][2] == [1, 0, 2, 0]
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary
