"""Training: one loop for every detector, resumable state, SVM batteries."""

from camtrace.training.engine import Objective, PatchSet, TrainConfig, TrainResult, train

__all__ = ["Objective", "PatchSet", "TrainConfig", "TrainResult", "train"]
