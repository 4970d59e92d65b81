"""camtrace: security of camera-model identification.

Identify which camera model shot a photo, attack that answer, defend against the attacks,
and measure all of it reproducibly. The public API mirrors the command line::

    import camtrace
    manifest = camtrace.simulate("default", "data/simcam", shots=24)
    det = camtrace.load_detector("bondi2017")   # shipped, or a checkpoint file
    print(det.identify("photo.jpg").model)
    camtrace.attack_file(det, "photo.jpg", "spoofed.png", "pgd", target="Nimbus_N300")
"""

from __future__ import annotations

import importlib
from typing import Any

from camtrace._version import __version__

_API = {
    "simulate": "camtrace.data.simcam",
    "index_dataset": "camtrace.data.layouts",
    "Manifest": "camtrace.data.manifest",
    "bondi_split": "camtrace.data.splits",
    "random_split": "camtrace.data.splits",
    "check_leaks": "camtrace.data.splits",
    "build_patch_store": "camtrace.data.patch_store",
    "PatchStore": "camtrace.data.patch_store",
    "load_rgb": "camtrace.data.images",
    "build": "camtrace.models",
    "load_detector": "camtrace.models",
    "zoo": "camtrace.models.zoo",
    "generator_zoo": "camtrace.models.zoo",
    "get_bench": "camtrace.data.bench",
    "prepare_bench": "camtrace.data.bench",
    "save_detector": "camtrace.models",
    "identify": "camtrace.models.inference",
    "calibrate_openset": "camtrace.models.calibration",
    "checkpoint_openset": "camtrace.models.openset",
    "load_photo": "camtrace.data.images",
    "train_detector": "camtrace.training.detector",
    "TrainConfig": "camtrace.training.engine",
    "evaluate_identifier": "camtrace.evaluation.identification",
    "make_attack": "camtrace.attacks",
    "attack_image": "camtrace.workflows.spoof",
    "attack_file": "camtrace.workflows.spoof",
    "spoof": "camtrace.workflows.spoof",
    "spoof_photo": "camtrace.workflows.camera_spoof",
    "examine": "camtrace.workflows.examine",
    "AttackSettings": "camtrace.workflows.config",
    "save_image": "camtrace.data.codec",
    "Jpeg": "camtrace.data.codec",
    "attack_metrics": "camtrace.evaluation.attack_metrics",
    "cfa_trace_ratio": "camtrace.evaluation.traces",
    "noise_sigma": "camtrace.evaluation.traces",
    "jpeg_quality_estimate": "camtrace.evaluation.traces",
    "audit": "camtrace.workflows.audit",
    "load_config": "camtrace.workflows.experiment",
    "run_experiment": "camtrace.workflows.experiment",
    "train_attack": "camtrace.workflows.experiment",
    "DefenseConfig": "camtrace.defenses",
    "make_objective": "camtrace.defenses",
    "train_generator": "camtrace.attacks.generative",
    "load_generator": "camtrace.attacks.generative",
    "prnu_enroll": "camtrace.workflows.prnu.files",
    "prnu_match": "camtrace.workflows.prnu.files",
    "load_fingerprint": "camtrace.models.fingerprint",
    "detect_spoof": "camtrace.workflows.spoof_check",
    "spoof_detector_zoo": "camtrace.models.zoo",
}

__all__ = ["__version__", *_API.keys()]  # noqa: PLE0604


def __getattr__(name: str) -> Any:
    """Import API members on first use, so ``import camtrace`` stays fast."""
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'camtrace' has no attribute {name!r}")
