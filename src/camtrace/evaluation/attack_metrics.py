"""How well an attack worked, measured on the uint8 images it wrote (docs/architecture.md).

Outcome, per class and overall: error rate (Güera et al. 2018, Sec. 4.3: share of attacked
patches the detector now misclassifies), accuracy under attack (Zhao et al., Table 2), Güera's
average confidence score, and for targeted attacks the success attack rate SAR (Chen et al.
2019; Cozzolino et al. 2021, SpoC Sec. 5.2: "the fraction of modified [...] images that are
classified as acquired by the target model"). Distortion: PSNR and SSIM (scikit-image, data
range 255, channels last), mean L0 / L2 / Linf of the 8-bit perturbation in pixel units.

Only patches the detector classifies correctly are attacked in Güera's protocol ("we only
perturb images from the test split which were correctly classified by our CNN in their
original states"): :func:`correct_subset` picks them. Every result is a plain dict for
``metrics.json``. Classification uses the network's own soft-max (the logits every attack
works on), also for a detector that carries Bondi's SVM battery.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from camtrace.errors import CamtraceError
from camtrace.evaluation.metrics import psnr_batch, ssim_batch
from camtrace.models import inference

Images = np.ndarray | torch.Tensor
Labels = np.ndarray | Sequence[int] | int | None


def as_nhwc(images: Images, what: str = "images") -> np.ndarray:
    """uint8 numpy (N, H, W, C) view of a uint8 batch given as (N, H, W, 3) or (N, 3, H, W)."""
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.dtype != np.uint8 or a.ndim != 4:
        raise CamtraceError(
            f"{what}: expected a uint8 batch (N, H, W, 3) or (N, 3, H, W), got {a.dtype} {a.shape}"
        )
    if a.shape[-1] == 3:
        return a
    if a.shape[1] == 3:
        return a.transpose(0, 2, 3, 1)
    raise CamtraceError(f"{what}: no colour axis of size 3 in shape {a.shape}")


@torch.no_grad()
def softmax_scores(detector: nn.Module, images: Images, batch_size: int = 256) -> np.ndarray:
    """(N, C) soft-max probabilities of the detector's logits on uint8 images (either layout)."""
    return inference.softmax_scores(detector, as_nhwc(images), batch_size)


def _label_array(value: Labels, n: int, what: str) -> np.ndarray | None:
    """Class indices, one per sample (an int is repeated); None stays None."""
    if value is None:
        return None
    a = np.asarray(value, dtype=np.int64).reshape(-1)
    if a.size == 1:
        a = np.full(n, int(a[0]), dtype=np.int64)
    if a.size != n:
        raise CamtraceError(f"{what}: {a.size} class indices for {n} images; give one per image")
    return a


def correct_subset(
    detector: nn.Module,
    images: Images,
    labels: Labels,
    n: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[np.ndarray, int]:
    """Indices of up to ``n`` images the detector classifies correctly (Güera Sec. 4.3), in a
    random order fixed by ``seed``; ``n=None`` keeps them all.

    Images are classified batch by batch in that order until ``n`` are found, so a large
    pool is not classified in full. Returns the indices and how many images were examined.
    """
    x = as_nhwc(images)
    y = _label_array(labels, len(x), "labels")
    order = np.random.default_rng(seed).permutation(len(x))
    want = len(x) if n is None else int(n)
    found: list[np.ndarray] = []
    examined = 0
    for lo in range(0, len(order), batch_size):
        if sum(len(f) for f in found) >= want:
            break
        chunk = order[lo : lo + batch_size]
        pred = softmax_scores(detector, x[chunk], batch_size).argmax(1)
        found.append(chunk[pred == y[chunk]])
        examined += len(chunk)
    picked = np.concatenate(found) if found else np.zeros(0, np.int64)
    return picked[:want], examined


def outcome_from_scores(
    scores: np.ndarray, labels: Labels, target: Labels = None
) -> dict[str, float | int]:
    """Outcome of one set of (attacked) images from their soft-max scores (N, C).

    ``error_rate``: share with arg-max != true label (Güera Tables 3-4); ``accuracy``: its
    complement (Zhao Table 2); ``confidence``: Güera's average confidence score, "the average
    value of the probability that is associated with the candidate camera model label for
    each of the image patches", where that probability "corresponds with the highest
    probability value assigned by the softmax layer" (Sec. 4.3), i.e. the mean of the
    per-image maximum soft-max probability; ``sar`` (targeted only): share classified as the
    target (Chen 2019, SpoC Sec. 5.2).
    """
    scores = np.asarray(scores, dtype=np.float64)
    y = _label_array(labels, len(scores), "labels")
    t = _label_array(target, len(scores), "target")
    if len(scores) == 0:
        return {"n": 0}
    pred = scores.argmax(1)
    out: dict[str, float | int] = {
        "n": len(scores),
        "error_rate": float(np.mean(pred != y)),
        "accuracy": float(np.mean(pred == y)),
        "confidence": float(np.mean(scores.max(1))),
    }
    if t is not None:
        out["sar"] = float(np.mean(pred == t))
    return out


def distortion(clean: Images, adv: Images) -> dict[str, Any]:
    """Per-image distortion of ``adv`` against ``clean`` (both uint8), as arrays (N,).

    PSNR is inf where an image is unchanged; norms are in 0-255 pixel units and L0 counts
    changed values (pixel x channel), as :class:`camtrace.attacks.AttackInfo` does.
    """
    a, b = as_nhwc(clean, "clean"), as_nhwc(adv, "adv")
    if a.shape != b.shape:
        raise CamtraceError(f"clean {a.shape} and adv {b.shape} images differ in shape")
    delta = (b.astype(np.float64) - a.astype(np.float64)).reshape(len(a), -1)
    return {
        "psnr": psnr_batch(a, b),
        "ssim": ssim_batch(a, b),
        "l0": (delta != 0).sum(1),
        "l2": np.sqrt((delta**2).sum(1)),
        "linf": np.abs(delta).max(1, initial=0.0),
    }


def summarise_distortion(d: dict[str, np.ndarray], mask: np.ndarray | None = None) -> dict:
    """Means of :func:`distortion` arrays over ``mask`` (all when None).

    ``psnr`` is the mean PSNR (dB) of the images the attack changed (None if it changed
    none), ``unchanged`` the share it left identical; SSIM (1 for an unchanged image) and
    the norms are means over all images.
    """
    keep = np.ones(len(d["psnr"]), bool) if mask is None else np.asarray(mask, bool)
    if not keep.any():
        return {}
    psnr = d["psnr"][keep]
    changed = np.isfinite(psnr)
    return {
        "psnr": float(psnr[changed].mean()) if changed.any() else None,
        "unchanged": float(np.mean(~changed)),
        "ssim": float(d["ssim"][keep].mean()),
        "l0": float(d["l0"][keep].mean()),
        "l2": float(d["l2"][keep].mean()),
        "linf": float(d["linf"][keep].mean()),
    }


def outcome_metrics(
    scores: np.ndarray, labels: Labels, classes: Sequence[str], target: Labels = None
) -> dict[str, Any]:
    """:func:`outcome_from_scores` overall and per true class (by name), and ``predicted``:
    how many images are read as each class (where a detector's answers go under attack: a
    sink class means noise sensitivity, not a steered attack)."""
    y = _label_array(labels, len(scores), "labels")
    t = _label_array(target, len(scores), "target")
    per_class = {}
    for c, name in enumerate(classes):
        m = y == c
        if m.any():
            per_class[name] = outcome_from_scores(scores[m], y[m], None if t is None else t[m])
    counts = np.bincount(np.asarray(scores).argmax(1), minlength=len(classes)) if len(y) else []
    return {
        "overall": outcome_from_scores(scores, y, t),
        "per_class": per_class,
        "predicted": {name: int(n) for name, n in zip(classes, counts)},
    }


def attack_metrics(
    detector: nn.Module,
    clean: Images,
    labels: Labels,
    adv: Images,
    *,
    target: Labels = None,
    jpeg_adv: Images | None = None,
    classes: Sequence[str] | None = None,
    batch_size: int = 256,
    scores: np.ndarray | torch.Tensor | None = None,
    jpeg_scores: np.ndarray | torch.Tensor | None = None,
) -> dict[str, Any]:
    """Outcome and distortion of an attack, overall and per true class, on uint8 images.

    ``clean``/``adv`` (and ``jpeg_adv``, the attacked images after JPEG re-compression) are
    uint8 batches (N, H, W, 3) or (N, 3, H, W); ``labels`` the true classes; ``target`` the
    class(es) of a targeted attack (adds ``sar``). ``scores`` (and ``jpeg_scores``): the
    detector's soft-max on ``adv`` (after JPEG) when the attack already judged it
    (``AttackInfo.scores``); otherwise the detector judges here. Returns ``{"overall",
    "per_class"}`` and, with ``jpeg_adv`` or ``jpeg_scores``, ``"jpeg"`` holding the outcome
    after compression.
    """
    classes = list(detector.classes if classes is None else classes)
    x_adv = as_nhwc(adv, "adv")
    y = _label_array(labels, len(x_adv), "labels")
    if y is None:
        raise CamtraceError("labels: attack_metrics needs the true class of every image")
    d = distortion(clean, x_adv)
    if scores is None:
        scores = softmax_scores(detector, x_adv, batch_size)
    result = outcome_metrics(np.asarray(scores), y, classes, target)
    result["overall"].update(summarise_distortion(d))
    for c, name in enumerate(classes):
        if name in result["per_class"]:
            result["per_class"][name].update(summarise_distortion(d, y == c))
    if jpeg_scores is None and jpeg_adv is not None:
        jpeg_scores = softmax_scores(detector, as_nhwc(jpeg_adv, "jpeg_adv"), batch_size)
    if jpeg_scores is not None:
        result["jpeg"] = outcome_metrics(np.asarray(jpeg_scores), y, classes, target)
    return result
