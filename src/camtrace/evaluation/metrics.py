"""Classification and image-quality metrics.

Patch and image accuracy, confusion matrices (Bondi 2017 Figs. 2 and 4), majority voting
over the first K patches of an image and the accuracy-vs-K curve (Bondi 2017 Sec. II and
Fig. 3), and PSNR / SSIM (Wang et al. 2004) of uint8 images for the distortion an attack
leaves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import accuracy_score, confusion_matrix

from camtrace.errors import CamtraceError

SSIM_WINDOW = 11  # Wang et al. 2004's Gaussian window: scikit-image's 2 * int(3.5 * 1.5 + 0.5) + 1


def _labels(name: str, y: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Return ``y`` as a 1-D integer array, checking it is non-empty and in range."""
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise CamtraceError(
            f"{name}: expected a non-empty 1-D array of labels, got shape {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise CamtraceError(f"{name}: labels must be integer class indices, got dtype {y.dtype}")
    if num_classes is not None and (y.min() < 0 or y.max() >= num_classes):
        raise CamtraceError(
            f"{name}: labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]; "
            "check num_classes"
        )
    return y.astype(np.int64)


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise CamtraceError(f"arrays must have the same length, got {lengths}")


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of samples whose predicted label equals the true one."""
    y_true, y_pred = _labels("y_true", y_true), _labels("y_pred", y_pred)
    _same_length(y_true=y_true, y_pred=y_pred)
    return float(accuracy_score(y_true, y_pred))


def confusion(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, normalize: bool = False
) -> np.ndarray:
    """Confusion matrix, rows = true (target) class, columns = predicted (output) class.

    With ``normalize`` each row is divided by its count (Bondi 2017 Fig. 2: the fraction of
    images of a target class assigned to each output class); empty rows stay zero.
    """
    y_true = _labels("y_true", y_true, num_classes)
    y_pred = _labels("y_pred", y_pred, num_classes)
    _same_length(y_true=y_true, y_pred=y_pred)
    return confusion_matrix(
        y_true, y_pred, labels=np.arange(num_classes), normalize="true" if normalize else None
    )


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy within each true class (the confusion diagonal over its row sum).

    A class with no samples gets NaN: its accuracy is undefined, not zero.
    """
    cm = confusion(y_true, y_pred, num_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """Position of each element among the elements of its group, in array order."""
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    sizes = np.diff(np.r_[starts, len(group)])
    rank = np.empty(len(group), dtype=np.int64)
    rank[order] = np.arange(len(group)) - np.repeat(starts, sizes)
    return rank


def majority_vote(
    patch_pred: np.ndarray,
    image_ids: np.ndarray,
    num_classes: int,
    k: int | None = None,
    scores: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Image labels by majority vote over each image's first ``k`` patches (Bondi 2017 Sec. II).

    Patches of an image are taken in array order (extraction order, best quality first);
    ``k=None`` uses all of them. A tie is broken by the largest summed per-patch score over
    the voting patches if ``scores`` (N, C) is given, then by the lowest class index.
    Returns ``(unique image ids sorted, predicted label per image)``.
    """
    # Hand-written: no library votes over the first k patches per group with score tie-break.
    patch_pred = _labels("patch_pred", patch_pred, num_classes)
    image_ids = np.asarray(image_ids)
    _same_length(patch_pred=patch_pred, image_ids=image_ids)
    if k is not None and k < 1:
        raise CamtraceError(f"k: the number of voting patches must be >= 1, got {k}")
    ids, image_index = np.unique(image_ids, return_inverse=True)
    voting = np.ones(len(patch_pred), dtype=bool)
    if k is not None:
        voting = _rank_in_group(image_index) < k
    votes = np.zeros((len(ids), num_classes), dtype=np.int64)
    np.add.at(votes, (image_index[voting], patch_pred[voting]), 1)
    tied = votes == votes.max(axis=1, keepdims=True)
    if scores is None:
        return ids, np.argmax(tied, axis=1)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(patch_pred), num_classes):
        raise CamtraceError(
            f"scores: expected shape {(len(patch_pred), num_classes)}, got {scores.shape}"
        )
    summed = np.zeros((len(ids), num_classes))
    np.add.at(summed, image_index[voting], scores[voting])
    return ids, np.argmax(np.where(tied, summed, -np.inf), axis=1)


def image_labels(patch_true: np.ndarray, image_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The true label of each image from its patches' labels, which must all agree.

    Returns ``(unique image ids sorted, label per image)``.
    """
    patch_true = _labels("patch_true", patch_true)
    image_ids = np.asarray(image_ids)
    _same_length(patch_true=patch_true, image_ids=image_ids)
    ids, image_index = np.unique(image_ids, return_inverse=True)
    label = np.empty(len(ids), dtype=np.int64)
    label[image_index] = patch_true
    disagree = label[image_index] != patch_true
    if disagree.any():
        bad = image_ids[np.flatnonzero(disagree)[0]]
        raise CamtraceError(f"patch_true: patches of image {bad!r} carry different true labels")
    return ids, label


def voting_curve(
    patch_pred: np.ndarray,
    patch_true: np.ndarray,
    image_ids: np.ndarray,
    num_classes: int,
    ks: Sequence[int] = (1, 2, 4, 8, 16, 32),
    scores: np.ndarray | None = None,
) -> dict[int, float]:
    """Image accuracy against the number of voting patches K (Bondi 2017 Fig. 3)."""
    _, truth = image_labels(patch_true, image_ids)
    curve = {}
    for k in ks:
        _, voted = majority_vote(patch_pred, image_ids, num_classes, k=k, scores=scores)
        curve[int(k)] = float(np.mean(voted == truth))
    return curve


def _image_pair(a: np.ndarray, b: np.ndarray, batch: bool) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    ndim, layout = (4, "(N, H, W, C)") if batch else (3, "(H, W, C)")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise CamtraceError(f"images must be uint8 (0-255), got {a.dtype} and {b.dtype}")
    if a.shape != b.shape or a.ndim != ndim:
        raise CamtraceError(f"images must both be {layout} of one shape, got {a.shape}, {b.shape}")
    return a, b


def psnr(a_uint8: np.ndarray, b_uint8: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(255^2 / MSE)``; inf for identical images."""
    a, b = _image_pair(a_uint8, b_uint8, batch=False)
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=255))


def ssim(a_uint8: np.ndarray, b_uint8: np.ndarray) -> float:
    """Structural similarity as Wang et al. 2004 define it: Eq. 13 on the statistics of an
    11x11 Gaussian window of sigma 1.5 (Eqs. 14-16: weighted means, population variances and
    covariance), K1 = 0.01, K2 = 0.03, dynamic range 255; the mean over the windows inside
    the image (MSSIM, Eq. 17), averaged over the colour channels."""
    a, b = _image_pair(a_uint8, b_uint8, batch=False)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise CamtraceError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} (Wang's Gaussian "
            f"window), got {a.shape[1]}x{a.shape[0]}; compare larger images"
        )
    return float(
        structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            K1=0.01,
            K2=0.03,
            data_range=255,
            channel_axis=-1,
        )
    )


def psnr_batch(a_uint8: np.ndarray, b_uint8: np.ndarray) -> np.ndarray:
    """PSNR of each pair of images in two (N, H, W, C) uint8 batches."""
    a, b = _image_pair(a_uint8, b_uint8, batch=True)
    return np.array([psnr(x, y) for x, y in zip(a, b, strict=True)])


def ssim_batch(a_uint8: np.ndarray, b_uint8: np.ndarray) -> np.ndarray:
    """SSIM of each pair of images in two (N, H, W, C) uint8 batches."""
    a, b = _image_pair(a_uint8, b_uint8, batch=True)
    return np.array([ssim(x, y) for x, y in zip(a, b, strict=True)])


def classification_summary(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """JSON-ready summary: overall and per-class accuracy, confusion counts, sample count.

    A class without samples has per-class accuracy ``None`` (undefined).
    """
    per_class = per_class_accuracy(y_true, y_pred, len(classes))
    return {
        "accuracy": accuracy(y_true, y_pred),
        "per_class": {
            name: (None if np.isnan(acc) else float(acc))
            for name, acc in zip(classes, per_class, strict=True)
        },
        "classes": list(classes),
        "confusion": confusion(y_true, y_pred, len(classes)).tolist(),
        "n": len(y_true),
    }
