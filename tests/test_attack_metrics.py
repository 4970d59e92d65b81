"""Attack metrics on hand-made arrays: error rate, Güera's confidence, SAR, PSNR, SSIM,
norms, both layouts, and the pick of correctly classified patches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from camtrace.errors import CamtraceError
from camtrace.evaluation.attack_metrics import (
    attack_metrics,
    correct_subset,
    distortion,
    outcome_from_scores,
    softmax_scores,
    summarise_distortion,
)

CLASSES = ["Halden_H20", "Kairo_DX-50", "Nimbus_N300"]


class ColourShare(nn.Module):
    """logits = log(mean of each channel): the soft-max is each channel's share of the sum,
    so an image of constant colour (60, 30, 10) scores (0.6, 0.3, 0.1) exactly."""

    classes = CLASSES

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3)).log() + 0 * self.unused


def flat(colours: list[tuple[int, int, int]], size: int = 16) -> np.ndarray:
    """(N, size, size, 3) uint8 images of constant colour (SSIM's window needs 11x11)."""
    return np.stack(
        [np.broadcast_to(np.array(c, np.uint8), (size, size, 3)) for c in colours]
    ).copy()


def test_outcome_on_hand_scores() -> None:
    scores = np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    out = outcome_from_scores(scores, [1, 1, 0], target=[0, 0, 2])
    assert out["n"] == 3
    assert out["error_rate"] == pytest.approx(2 / 3)
    assert out["accuracy"] == pytest.approx(1 / 3)
    assert out["confidence"] == pytest.approx((0.6 + 0.8 + 0.6) / 3)  # mean highest soft-max
    assert out["sar"] == pytest.approx(2 / 3)
    assert "sar" not in outcome_from_scores(scores, [1, 1, 0])


def test_attack_metrics_per_class_and_layouts() -> None:
    det = ColourShare()
    clean = flat([(10, 80, 10), (10, 80, 10), (60, 30, 10)])
    adv = flat([(60, 30, 10), (10, 80, 10), (20, 20, 60)])
    labels = np.array([1, 1, 0])
    m = attack_metrics(det, clean, labels, adv, target=[0, 0, 2])
    o = m["overall"]
    assert (o["n"], o["error_rate"], o["sar"]) == (3, pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert o["confidence"] == pytest.approx(2 / 3)
    k = m["per_class"]["Kairo_DX-50"]
    assert (k["n"], k["error_rate"], k["confidence"]) == (2, 0.5, pytest.approx(0.7))
    assert k["unchanged"] == 0.5 and m["per_class"]["Halden_H20"]["error_rate"] == 1.0
    assert "Nimbus_N300" not in m["per_class"]
    nchw = attack_metrics(
        det,
        torch.from_numpy(clean).permute(0, 3, 1, 2),
        labels,
        torch.from_numpy(adv).permute(0, 3, 1, 2),
        target=[0, 0, 2],
    )
    assert nchw == m
    with_jpeg = attack_metrics(det, clean, labels, adv, jpeg_adv=clean)
    assert with_jpeg["jpeg"]["overall"]["error_rate"] == 0.0


def test_psnr_ssim_and_norms_exact() -> None:
    clean = flat([(100, 100, 100), (100, 100, 100), (100, 100, 100)])
    adv = clean.copy()
    adv[0, 2, 3, 1] += 16  # one value of 768 changed by 16
    adv[1] = 110  # every value +10
    d = distortion(clean, adv)
    assert d["psnr"][0] == pytest.approx(10 * math.log10(255**2 / (256 / 768)))
    assert d["psnr"][1] == pytest.approx(10 * math.log10(255**2 / 100))
    assert math.isinf(d["psnr"][2])
    c1 = (0.01 * 255) ** 2  # flat images: SSIM is its luminance term alone
    assert d["ssim"][1] == pytest.approx((2 * 100 * 110 + c1) / (100**2 + 110**2 + c1))
    assert d["ssim"][2] == 1.0
    assert d["l0"].tolist() == [1, 768, 0]
    assert d["l2"] == pytest.approx([16, math.sqrt(768 * 100), 0])
    assert d["linf"].tolist() == [16, 10, 0]
    s = summarise_distortion(d)
    assert s["psnr"] == pytest.approx((d["psnr"][0] + d["psnr"][1]) / 2)  # unchanged left out
    assert s["unchanged"] == pytest.approx(1 / 3) and s["l0"] == pytest.approx(769 / 3)
    assert summarise_distortion(d, [False, False, True])["psnr"] is None


def test_softmax_scores_are_the_networks_in_eval_mode_for_either_layout() -> None:
    """The one batched scorer of evaluation: the network's soft-max (never the SVM battery a
    Bondi detector carries), batch by batch, the caller's train/eval mode restored."""
    det = ColourShare().train()
    det.svm = lambda features: torch.zeros(len(features), 3)  # would vote otherwise
    images = flat([(60, 30, 10), (10, 80, 10), (20, 20, 60)])
    scores = softmax_scores(det, images, batch_size=2)
    expected = np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    np.testing.assert_allclose(scores, expected, rtol=1e-6)  # float32 soft-max of exact shares
    nchw = softmax_scores(det, torch.from_numpy(images).permute(0, 3, 1, 2))
    np.testing.assert_array_equal(nchw, scores)
    assert det.training


def test_correct_subset_keeps_only_correct_ones_seeded() -> None:
    det = ColourShare()
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 40)
    colours = [tuple(int(v) for v in np.where(np.arange(3) == c, 200, 20)) for c in truth]
    images = flat(colours)
    labels = np.where(np.arange(40) % 3 == 0, (truth + 1) % 3, truth)  # every third is wrong
    everything, examined = correct_subset(det, images, labels)
    assert examined == 40 and sorted(everything) == sorted(np.flatnonzero(labels == truth))
    pred = softmax_scores(det, images).argmax(1)
    assert (pred[everything] == labels[everything]).all()
    five, examined = correct_subset(det, images, labels, n=5, seed=1, batch_size=4)
    assert len(five) == 5 and set(five) <= set(everything) and examined < 40
    again, _ = correct_subset(det, images, labels, n=5, seed=1, batch_size=8)
    other, _ = correct_subset(det, images, labels, n=5, seed=2, batch_size=4)
    assert again.tolist() == five.tolist() and other.tolist() != five.tolist()


def test_bad_inputs_are_one_line_errors() -> None:
    det = ColourShare()
    good = flat([(10, 80, 10)])
    with pytest.raises(CamtraceError, match="uint8"):
        attack_metrics(det, good, [1], good.astype(np.float32))
    with pytest.raises(CamtraceError, match="differ in shape"):
        distortion(good, flat([(10, 80, 10)], size=12))
    with pytest.raises(CamtraceError, match="one per image"):
        attack_metrics(det, good, [1, 0], good)
