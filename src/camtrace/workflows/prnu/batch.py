"""PRNU over many photos, shared among processes (``concurrent.futures``): devices' fingerprints
enrolled from their photo files, and the PCE of photo files against a stack of fingerprints.

Each process reads its photos (``load_rgb``) and computes their residuals in batches of at most
``PIXELS`` pixels (a 12-megapixel original alone, 384x512 SimCam photos twenty at a time), so
memory stays bounded whatever the photo size; only sums, fingerprints and PCE values cross
process boundaries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from camtrace.data.images import load_rgb
from camtrace.errors import CamtraceError
from camtrace.models.prnu import (
    FingerprintSums,
    ResidualSettings,
    fingerprint,
    intensity,
    match_pce,
    noise_residual,
)
from camtrace.processes import fresh_processes

PIXELS = 4_000_000
"""Pixels of the photos whose residuals are computed at once (one batch)."""
CHUNK = 8
"""Photos a process takes at a time."""


def read_photo(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """The photo (H, W, 3) uint8; with ``size`` (H, W), one of another size is an error."""
    rgb = load_rgb(path)
    if size is not None and rgb.shape[:2] != tuple(size):
        raise CamtraceError(
            f"{path}: {rgb.shape[1]}x{rgb.shape[0]}, not the {size[1]}x{size[0]} of the other "
            "photos; a fingerprint is of one sensor geometry: move it out (a rotated, cropped "
            "or resized photo does not align) or enrol each size apart"
        )
    return rgb


def batches(paths: Sequence[str], size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The photos of ``paths`` as uint8 batches (N, H, W, 3) of at most ``PIXELS`` pixels."""
    step = max(1, PIXELS // (size[0] * size[1]))
    for i in range(0, len(paths), step):
        yield np.stack([read_photo(p, size) for p in paths[i : i + step]])


def photo_sums(
    paths: Sequence[str], size: tuple[int, int], settings: ResidualSettings
) -> FingerprintSums:
    """The ML estimate's sums over the photos of ``paths`` (one process's share)."""
    sums = FingerprintSums.empty(size)
    for images in batches(paths, size):
        sums.add(images, settings=settings)
    return sums


def enrol_devices(
    photos: Mapping[str, Sequence[str | Path]],
    settings: ResidualSettings = ResidualSettings(),
    workers: int = 2,
    progress: bool = False,
) -> dict[str, tuple[np.ndarray, int, tuple[int, int]]]:
    """Each device's fingerprint from its photo files: device -> (K (H, W) float32, photos,
    size). The size is its first photo's; a photo of another size is an error. Chunks of
    ``CHUNK`` photos are shared among ``workers`` processes, a device's sums are added as its
    chunks come back and dropped once its fingerprint is made."""
    if not photos:
        return {}
    sizes = {d: read_photo(paths[0]).shape[:2] for d, paths in photos.items() if paths}
    if len(sizes) < len(photos):
        empty = next(d for d, paths in photos.items() if not paths)
        raise CamtraceError(f"{empty}: no photos to enrol its fingerprint from")
    tasks = [
        (device, tuple(map(str, paths[i : i + CHUNK])))
        for device, paths in photos.items()
        for i in range(0, len(paths), CHUNK)
    ]
    left = {d: sum(1 for t in tasks if t[0] == d) for d in photos}
    sums: dict[str, FingerprintSums] = {}
    out = {}
    work = [(photo_sums, (paths, sizes[device], settings)) for device, paths in tasks]
    total = sum(len(p) for p in photos.values())
    for k, part in _run(work, workers, progress, total, "PRNU: enrolling", _count):
        device = tasks[k][0]
        sums[device] = sums[device] + part if device in sums else part
        left[device] -= 1
        if left[device] == 0:
            done = sums.pop(device)
            out[device] = (fingerprint(done), done.count, sizes[device])
    return {d: out[d] for d in photos}


_FINGERPRINTS: np.ndarray | None = None


def _hold(fingerprints: np.ndarray) -> None:
    global _FINGERPRINTS
    _FINGERPRINTS = fingerprints


def photo_pce(
    paths: Sequence[str],
    settings: ResidualSettings,
    fingerprints: np.ndarray | None = None,
    neighbourhood: int = 11,
) -> np.ndarray:
    """The PCE (len(paths), F) of photo files against fingerprints (F, H, W) of their size
    (given, or those a worker holds)."""
    stack = _FINGERPRINTS if fingerprints is None else fingerprints
    assert stack is not None
    rows = []
    for images in batches(paths, stack.shape[1:]):
        residuals, luminance = noise_residual(images, settings), intensity(images)
        for w, i in zip(residuals, luminance):
            rows.append(match_pce(w, i, stack, neighbourhood=neighbourhood).pce)
    return np.stack(rows)


def pce_table(
    paths: Sequence[str | Path],
    fingerprints: np.ndarray,
    settings: ResidualSettings = ResidualSettings(),
    neighbourhood: int = 11,
    workers: int = 2,
    progress: bool = False,
) -> np.ndarray:
    """The PCE of every photo file against every fingerprint (F, H, W): (photos, F), the
    photos shared among ``workers`` processes, each holding the fingerprints once."""
    chunks = [tuple(map(str, paths[i : i + CHUNK])) for i in range(0, len(paths), CHUNK)]
    work = [(photo_pce, (c, settings, None, neighbourhood)) for c in chunks]
    rows: list[np.ndarray | None] = [None] * len(chunks)
    for k, part in _run(
        work, workers, progress, len(paths), "PRNU: matching", len, (_hold, (fingerprints,))
    ):
        rows[k] = part
    return np.concatenate(rows) if rows else np.zeros((0, len(fingerprints)))


def _count(sums: FingerprintSums) -> int:
    return sums.count


def _run(
    work: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]],
    workers: int,
    progress: bool,
    total: int,
    label: str,
    size: Callable[[Any], int],
    init: tuple[Callable[..., None], tuple[Any, ...]] | None = None,
) -> Iterator[tuple[int, Any]]:
    """``(index, fn(*args))`` for each item of ``work``, as they finish: inline with one
    worker, else in a pool of fresh processes; the bar advances by ``size(result)``."""
    with _bar(progress, total, label) as advance, _pool(workers, init) as pool:
        if pool is None:
            if init is not None:
                init[0](*init[1])
            for k, (fn, args) in enumerate(work):
                result = fn(*args)
                advance(size(result))
                yield k, result
            return
        futures: dict[Future, int] = {
            pool.submit(fn, *args): k for k, (fn, args) in enumerate(work)
        }
        try:
            for future in as_completed(futures):
                k, result = futures.pop(future), future.result()  # a done future lets go of it
                del future
                advance(size(result))
                yield k, result
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


@contextlib.contextmanager
def _pool(
    workers: int, init: tuple[Callable[..., None], tuple[Any, ...]] | None
) -> Iterator[Executor | None]:
    if workers <= 1:
        yield None
        return
    initializer, initargs = init if init is not None else (None, ())
    with ProcessPoolExecutor(
        workers, mp_context=fresh_processes(__name__), initializer=initializer, initargs=initargs
    ) as pool:
        yield pool


@contextlib.contextmanager
def _bar(enabled: bool, total: int, label: str) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
