"""Several detectors as one: the mean of their logits (Liu et al. 2017, Dong et al. 2018 Eq. 3),
the model an ensemble attack is crafted on (SpoC Table 4, third block)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from camtrace.errors import CamtraceError


class LogitEnsemble(nn.Module):
    """Detectors sharing one class list; ``forward`` averages their logits."""

    def __init__(self, detectors: Sequence[nn.Module]) -> None:
        super().__init__()
        classes = [list(getattr(d, "classes", [])) for d in detectors]
        if not detectors or any(c != classes[0] for c in classes):
            raise CamtraceError(
                "ensemble: give at least one detector, all with one class list (same training data)"
            )
        self.members = nn.ModuleList(detectors)
        self.classes = classes[0]
        self.arch = "+".join(getattr(d, "arch", type(d).__name__) for d in detectors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([d(x) for d in self.members]).mean(0)
