"""The OvO SVM battery in torch predicts exactly what scikit-learn's does."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.multiclass import OneVsOneClassifier
from sklearn.svm import LinearSVC

from camtrace.models.svm import OvOLinearSVM
from camtrace.training.svm import fit_svm


def blobs(n: int = 240, k: int = 4, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    centres = rng.normal(scale=1.5, size=(k, d))
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


def test_votes_match_sklearn_one_vs_one() -> None:
    x, y = blobs()
    svm = OvOLinearSVM.fit(x, y, 4, C=0.5)
    ref = OneVsOneClassifier(LinearSVC(C=0.5, dual="auto", max_iter=5000, random_state=0)).fit(x, y)
    xt = x + np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    assert len(svm.pairs) == 6
    np.testing.assert_array_equal(svm.predict(torch.from_numpy(xt)).numpy(), ref.predict(xt))


def test_c_is_chosen_on_validation_accuracy() -> None:
    x, y = blobs(n=480, seed=2)
    fit = fit_svm(x[:240], y[:240], x[240:], y[240:], 4, Cs=(1e-4, 1.0))
    assert set(fit.val_accuracy) == {1e-4, 1.0}
    assert fit.val_accuracy[fit.C] == max(fit.val_accuracy.values())
    assert fit.val_accuracy[fit.C] > 0.8
