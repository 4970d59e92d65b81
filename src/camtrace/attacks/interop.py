"""Using a camtrace detector with the reference attack libraries (torchattacks, ART).

Those libraries expect a model on pixels in [0, 1]; a camtrace detector takes [0, 255]
(docs/architecture.md, "Pixels"). The wrapper is the only glue needed to run them on the same
detector, as the tests and ``benchmarks/attacks.py`` do to compare against them.
"""

from __future__ import annotations

import torch
from torch import nn


class UnitRangeDetector(nn.Module):
    """``detector`` seen from the [0, 1] pixel range: ``forward(x01) = detector(255 x01)``.

    It takes the detector's train/eval mode, since torchattacks restores the wrapper's mode
    onto the wrapped model after an attack.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector
        self.train(detector.training)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.detector(x01 * 255)
