"""Linear one-vs-one SVM battery on detector features (Bondi et al. 2017, Sec. II).

Fitted with scikit-learn (``OneVsOneClassifier(LinearSVC)``), then stored as plain tensors
so a checkpoint stays safetensors-only and prediction runs batched in torch.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn


class OvOLinearSVM(nn.Module):
    """N(N-1)/2 linear binary SVMs; the label of a feature vector is the majority vote.

    Pair ``p = (i, j)`` votes for class ``i`` when ``w_p . v + b_p > 0`` (scikit-learn's
    convention for one-vs-one), else for ``j``.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        pairs = list(itertools.combinations(range(num_classes), 2))
        self.register_buffer("pairs", torch.tensor(pairs, dtype=torch.long))
        self.register_buffer("coef", torch.zeros(len(pairs), dim))
        self.register_buffer("intercept", torch.zeros(len(pairs)))
        self.register_buffer("C", torch.tensor(1.0))
        self.num_classes = num_classes

    @classmethod
    def empty_like(cls, state: dict[str, torch.Tensor], prefix: str = "svm.") -> OvOLinearSVM:
        pairs, dim = state[prefix + "coef"].shape
        n = round((1 + (1 + 8 * pairs) ** 0.5) / 2)
        return cls(n, dim)

    @classmethod
    def fit(
        cls, features: np.ndarray, labels: np.ndarray, num_classes: int, C: float, seed: int = 0
    ) -> OvOLinearSVM:
        """Fit the battery with scikit-learn on (N, D) features and integer labels."""
        from sklearn.multiclass import OneVsOneClassifier
        from sklearn.svm import LinearSVC

        clf = OneVsOneClassifier(LinearSVC(C=C, dual="auto", max_iter=5000, random_state=seed))
        clf.fit(features, labels)
        svm = cls(num_classes, features.shape[1])
        present = list(clf.classes_)
        for p, (i, j) in enumerate(svm.pairs.tolist()):
            if i in present and j in present:
                # sklearn orders estimators over combinations of present classes; its
                # binary LinearSVC predicts the second class (j) when the score is > 0.
                k = list(itertools.combinations(present, 2)).index((i, j))
                est = clf.estimators_[k]
                svm.coef[p] = -torch.as_tensor(est.coef_[0], dtype=torch.float32)
                svm.intercept[p] = -float(est.intercept_[0])
        svm.C.fill_(C)
        return svm

    def decision_function(self, features: torch.Tensor) -> torch.Tensor:
        """(N, P) decision value of each pairwise SVM: pair ``(i, j)`` votes ``i`` when > 0."""
        return features.float() @ self.coef.T + self.intercept

    def votes(self, features: torch.Tensor) -> torch.Tensor:
        """(N, num_classes) count of binary SVMs voting for each class."""
        score = self.decision_function(features)
        winner = torch.where(score > 0, self.pairs[:, 0], self.pairs[:, 1])
        return torch.nn.functional.one_hot(winner, self.num_classes).sum(1).float()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Votes with a small tie-break by summed margins, as scikit-learn's ``ovo`` does."""
        score = self.decision_function(features)
        conf = torch.zeros(features.shape[0], self.num_classes, device=features.device)
        conf.index_add_(1, self.pairs[:, 0], score)
        conf.index_add_(1, self.pairs[:, 1], -score)
        conf = conf / (3 * (conf.abs() + 1))
        return self.votes(features) + conf

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward(features).argmax(1)
