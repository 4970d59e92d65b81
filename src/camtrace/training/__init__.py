"""Training: one loop for every detector, resumable state, SVM batteries."""

from camtrace.training.engine import PatchSet, TrainConfig, TrainResult, train

__all__ = ["PatchSet", "TrainConfig", "TrainResult", "train"]
