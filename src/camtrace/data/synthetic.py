"""Synthetic images in the manifest contract: what GAN sources learn from and how their
images sit beside real photos (Cozzolino et al. 2021, SpoC, Sec. 5.1).

A synthetic source's images are manifest rows like any camera's: make ``Synthetic``, model
``Synthetic_<NAME>`` (``Synthetic_DCGAN``), a split column. A GAN-image detector is trained
on a relabelled union (:func:`real_vs_synthetic`): model ``real`` or ``synthetic``, with the
original model kept in the ``instance`` column, so a per-source true-positive rate (SpoC
Tables 1-2) can still be read from a patch store's metadata.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from camtrace.data.images import load_rgb
from camtrace.data.manifest import Manifest
from camtrace.errors import CamtraceError

MAKE = "Synthetic"
REAL, SYNTHETIC = "real", "synthetic"  # the classes of a GAN-image detector


def source_model(name: str) -> str:
    """The manifest model of synthetic source ``name``: ``dcgan`` -> ``Synthetic_DCGAN``."""
    return f"{MAKE}_{name.upper()}"


def real_crops(
    manifest: Manifest, count: int, size: int, scale: int, rng: np.random.Generator
) -> np.ndarray:
    """``count`` random ``size * scale`` crops of the manifest's images, box-averaged by
    ``scale`` to ``size`` px (N, size, size, 3) uint8: GANs learn from resized photos
    (CelebA-HQ, LSUN), so a source sees scene content, not the camera's pixel grid."""
    if len(manifest) == 0:
        raise CamtraceError(f"{manifest.root}: no images to learn from; pass a manifest with rows")
    side = size * scale
    picks = np.sort(rng.integers(0, len(manifest), count))
    out = np.empty((count, size, size, 3), np.uint8)
    for row in np.unique(picks):
        image = load_rgb(manifest.abspath(manifest[int(row)]), min_size=side)
        for k in np.flatnonzero(picks == row):
            y = int(rng.integers(0, image.shape[0] - side + 1))
            x = int(rng.integers(0, image.shape[1] - side + 1))
            crop = image[y : y + side, x : x + side]
            out[k] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return out


def real_vs_synthetic(real: Manifest, synthetic: Manifest) -> Manifest:
    """One manifest for a GAN-image detector: model ``real`` / ``synthetic``, the original
    model (real: its device) in ``instance``; paths absolute, rooted at ``synthetic``."""
    rows = [
        dataclasses.replace(r, path=str(real.abspath(r)), model=REAL, instance=r.device)
        for r in real
    ]
    rows += [
        dataclasses.replace(r, path=str(synthetic.abspath(r)), model=SYNTHETIC, instance=r.model)
        for r in synthetic
    ]
    return Manifest(rows, synthetic.root)
