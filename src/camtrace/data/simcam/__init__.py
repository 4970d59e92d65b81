"""SimCam: physically grounded simulated camera models, camtrace's default data.

Camera models are data (YAML presets); ``simulate`` shoots every scene with every device
and writes Dresden-style JPEGs plus a manifest.
"""

from camtrace.data.simcam.pipeline import dataset_name, render, simulate
from camtrace.data.simcam.preset import Preset, available_presets, camera_tables, load_preset

__all__ = [
    "Preset",
    "available_presets",
    "camera_tables",
    "dataset_name",
    "load_preset",
    "render",
    "simulate",
]
