"""The patch store: uint8 patch shards plus a metadata table (docs/architecture.md contract).

Layout of a store folder::

    store.json        format version, protocol, patch size, classes, seed, splits,
                      manifest digest, shard sizes, summary (counts, skipped files)
    meta.npz          typed columns (np.savez, uncompressed: no CSV parsing, no pickle);
                      image-level columns (source, model, label, instance, scene, split)
                      once per image, patch-level ones (image, y, x, quality) per patch
    shard-00000.npy   (n, s, s, 3) uint8, opened with np.load(mmap_mode="r")

The folder is built under a temporary name and renamed when complete. Shards are written
sequentially as images finish, so a build never holds more than a few images' patches in
RAM.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from rich.progress import Progress

from camtrace.data.images import load_rgb
from camtrace.data.manifest import Manifest, Record
from camtrace.data.patches import PatchProtocol, extract_patches, get_protocol
from camtrace.errors import CamtraceError
from camtrace.io import atomic_path, write_json

FORMAT_VERSION = 1
STORE_JSON = "store.json"
META_NPZ = "meta.npz"
UNUSED_SPLIT = "unused"
MAX_WARNINGS = 10  # one line each for the first ones, then a single count

IMAGE_COLUMNS = ("source", "model", "label", "instance", "scene", "split")
PATCH_COLUMNS = ("image", "y", "x", "quality")

Job = tuple[str, PatchProtocol, int, int]  # (file, protocol, seed, manifest row)
Extracted = tuple[np.ndarray, np.ndarray, np.ndarray] | str  # patches, or why skipped


class SkippedImageWarning(UserWarning):
    """An image was left out of a patch store (corrupt, truncated, too small, bomb...)."""


class _Meta(Mapping[str, np.ndarray]):
    """Per-patch columns; image-level ones are expanded on first access, then cached."""

    def __init__(self, images: dict[str, np.ndarray], patches: dict[str, np.ndarray]) -> None:
        self.images = images
        self._columns = dict(patches)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._columns:
            if key not in self.images:
                raise KeyError(key)
            self._columns[key] = self.images[key][self._columns["image"]]
        return self._columns[key]

    def __iter__(self) -> Iterator[str]:
        return iter(IMAGE_COLUMNS + PATCH_COLUMNS)

    def __len__(self) -> int:
        return len(IMAGE_COLUMNS) + len(PATCH_COLUMNS)


class PatchStore:
    """A built patch store: memory-mapped uint8 shards and their metadata."""

    def __init__(self, path: Path, info: dict, meta: _Meta, shards: list[np.ndarray]) -> None:
        self.path = path
        self.protocol = PatchProtocol(**info["protocol"])
        self.patch_size: int = self.protocol.size
        self.classes: list[str] = list(info["classes"])
        self.summary: dict = info["summary"]
        self.meta = meta
        self._shards = shards
        self._shard_size: int = info["shard_size"]

    @classmethod
    def open(cls, path: str | Path) -> PatchStore:
        """Open a store folder; shards are memory-mapped, not read."""
        path = Path(path)
        info = _read_info(path)
        with np.load(path / META_NPZ) as npz:
            images = {c: npz[f"image_{c}"] for c in IMAGE_COLUMNS}
            patches = {c: npz[f"patch_{c}"] for c in PATCH_COLUMNS}
        shards = [_open_shard(path / name) for name in info["shards"]]
        return cls(path, info, _Meta(images, patches), shards)

    def __len__(self) -> int:
        return len(self.meta["image"])

    def indices(self, split: str | None = None, models: Sequence[str] | None = None) -> np.ndarray:
        """Patch indices of ``split`` (any when None) and camera ``models`` (any when None)."""
        images = self.meta.images
        keep = np.ones(len(images["split"]), dtype=bool)
        if split is not None:
            self._check_known("split", [split], images["split"])
            keep &= images["split"] == split
        if models is not None:
            self._check_known("model", list(models), self.classes)
            keep &= np.isin(images["model"], list(models))
        return np.flatnonzero(keep[self.meta["image"]])

    def _check_known(self, column: str, asked: list[str], known: Iterable[str]) -> None:
        known = sorted({str(k) for k in known})
        unknown = sorted(set(asked) - set(known))
        if unknown:
            raise CamtraceError(
                f"{self.path}: {column} {unknown} not in this patch store; it has {known}"
            )

    def labels(self, indices: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """Class indices of the patches ``indices`` in the order ``classes`` (a detector's,
        which may differ from the store's or list fewer models)."""
        lookup = {c: i for i, c in enumerate(classes)}
        return np.array([lookup[m] for m in self.meta["model"][indices]], dtype=np.int64)

    def patches(self, indices: np.ndarray | None = None) -> np.ndarray:
        """Gather patches (N, s, s, 3) uint8 from the shards (all of them when None)."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise CamtraceError(f"{self.path}: patch index out of range 0..{len(self) - 1}")
        s = self.patch_size
        out = np.empty((len(idx), s, s, 3), dtype=np.uint8)
        shard_of, offset = np.divmod(idx, self._shard_size)
        for k in np.unique(shard_of):
            rows = np.flatnonzero(shard_of == k)
            out[rows] = self._shards[k][offset[rows]]
        return out

    def iter_batches(
        self, indices: np.ndarray, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (patches uint8, their indices) in the order of ``indices``."""
        indices = np.asarray(indices, dtype=np.int64)
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            yield self.patches(chunk), chunk


def _read_info(path: Path) -> dict:
    info_path = path / STORE_JSON
    if not info_path.is_file():
        raise CamtraceError(f"{path}: not a patch store (no {STORE_JSON}); build it first")
    info = json.loads(info_path.read_text())
    if info.get("format_version") != FORMAT_VERSION:
        raise CamtraceError(
            f"{path}: patch store format {info.get('format_version')}, this camtrace reads "
            f"{FORMAT_VERSION}; rebuild the store"
        )
    return info


def _open_shard(path: Path) -> np.ndarray:
    if not path.is_file():
        raise CamtraceError(f"{path}: patch shard missing; rebuild the store")
    return np.load(path, mmap_mode="r")


def store_name(manifest: Manifest, protocol: PatchProtocol) -> str:
    """The folder name a workdir keeps ``protocol``'s patches of ``manifest`` under."""
    return f"patches-{protocol.name}{protocol.size}-{protocol.count}-{manifest.digest()[:12]}"


def build_patch_store(
    manifest: Manifest,
    out: str | Path,
    protocol: PatchProtocol | str = "bondi",
    splits: Sequence[str] | None = None,
    seed: int = 0,
    workers: int = 2,
    shard_size: int = 16384,
    progress: bool = True,
) -> PatchStore:
    """Cut ``protocol``'s patches from the ``splits`` rows of ``manifest`` into ``out``.

    ``splits=None`` takes every row except split "unused". Image i (its manifest row) gets
    the rng ``SeedSequence([seed, i])``, so the store is identical for any ``workers``.
    Bad files are skipped with a :class:`SkippedImageWarning`; an existing store built
    from the same manifest digest, protocol, splits and seed is returned as is.
    """
    out = Path(out)
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    if shard_size < 1:
        raise CamtraceError(f"shard_size {shard_size} must be >= 1")
    rows, chosen = _select_rows(manifest, splits)
    key = {
        "format_version": FORMAT_VERSION,
        "manifest_digest": manifest.digest(),
        "protocol": asdict(protocol),
        "splits": chosen,
        "seed": seed,
    }
    if _matches(out, key):
        return PatchStore.open(out)
    jobs = [(str(manifest.abspath(manifest[i])), protocol, seed, i) for i in rows]
    with atomic_path(out) as tmp:
        tmp.mkdir()
        with contextlib.closing(_ordered_map(_extract_job, jobs, workers)) as results:
            built = _write_store(tmp, results, manifest, rows, protocol, shard_size, progress)
        info = {**key, "patch_size": protocol.size, "classes": manifest.models, **built}
        write_json(tmp / STORE_JSON, info)
    return PatchStore.open(out)


def _select_rows(manifest: Manifest, splits: Sequence[str] | None) -> tuple[list[int], list[str]]:
    """Manifest row indices in the chosen splits, and those splits sorted."""
    present = {r.split for r in manifest}
    chosen = sorted(present - {UNUSED_SPLIT} if splits is None else set(splits))
    rows = [i for i, r in enumerate(manifest) if r.split in chosen]
    if not rows:
        raise CamtraceError(
            f"{manifest.root}: no manifest rows in splits {chosen}; the manifest has "
            f"{sorted(present)}"
        )
    return rows, chosen


def _matches(out: Path, key: dict) -> bool:
    """True if ``out`` is a store built with ``key``; refuse to overwrite other folders."""
    if not out.exists():
        return False
    if not (out / STORE_JSON).is_file():
        if out.is_dir() and not any(out.iterdir()):
            return False
        raise CamtraceError(f"{out}: exists and is not a patch store; choose another folder")
    info = json.loads((out / STORE_JSON).read_text())
    return all(info.get(k) == v for k, v in key.items())


def _extract_job(job: Job) -> Extracted:
    """Patches of one image, or the one-line reason it was skipped."""
    path, protocol, seed, row = job
    rng = np.random.default_rng(np.random.SeedSequence([seed, row]))
    try:
        image = load_rgb(path, min_size=protocol.size)
        return extract_patches(image, protocol, rng)
    except CamtraceError as e:
        return str(e)


def _ordered_map(fn: Callable[[Job], Extracted], jobs: list[Job], workers: int) -> Iterator:
    """``map`` over a process pool, in order, with at most 2*workers jobs in flight.

    Hand-written because ``Executor.map`` submits every job at once (a bounded
    ``buffersize`` only arrives in Python 3.14), which would pile results up in RAM.
    """
    if workers <= 1:
        yield from map(fn, jobs)
        return
    pending: deque[Future] = deque()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        try:
            for job in jobs:
                pending.append(pool.submit(fn, job))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _write_store(
    folder: Path,
    results: Iterable[Extracted],
    manifest: Manifest,
    rows: list[int],
    protocol: PatchProtocol,
    shard_size: int,
    progress: bool,
) -> dict:
    """Stream extraction results into shards and meta.npz; return the store.json fields."""
    writer = _ShardWriter(folder, shard_size, protocol.size)
    used: list[tuple[int, np.ndarray, np.ndarray]] = []
    skipped: list[dict[str, str]] = []
    records = [manifest[i] for i in rows]
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("extracting patches", total=len(records))
        for image_id, (record, result) in enumerate(zip(records, results, strict=True)):
            bar.advance(task)
            if isinstance(result, str):
                skipped.append(_skip(record, result, warn=len(skipped) < MAX_WARNINGS))
                continue
            patches, positions, scores = result
            writer.write(patches)
            used.append((image_id, positions, scores))
    if not used:
        raise CamtraceError(
            f"{manifest.root}: none of the {len(records)} images could be used "
            f"(first: {skipped[0]['reason']})"
        )
    if len(skipped) > MAX_WARNINGS:
        warnings.warn(
            f"... and {len(skipped) - MAX_WARNINGS} more images skipped "
            f"(all listed in {STORE_JSON})",
            SkippedImageWarning,
            stacklevel=2,
        )
    shards = writer.close()
    meta = _meta_columns(records, manifest.models, used)
    np.savez(folder / META_NPZ, **meta)
    summary = _summary(records, used, skipped)
    return {"shard_size": shard_size, "shards": shards, "summary": summary}


def _skip(record: Record, reason: str, warn: bool = True) -> dict[str, str]:
    # Attributed to the image itself (line 0): Python then prints one line, no source line.
    if warn:
        warnings.warn_explicit(f"skipped {reason}", SkippedImageWarning, record.path, 0)
    return {"path": record.path, "reason": reason}


def _meta_columns(
    records: list[Record], classes: list[str], used: list[tuple[int, np.ndarray, np.ndarray]]
) -> dict[str, np.ndarray]:
    """meta.npz arrays: one row per image (``image_*``) and one per patch (``patch_*``)."""
    label = {m: i for i, m in enumerate(classes)}
    positions = np.concatenate([p for _, p, _ in used])
    return {
        "image_source": np.array([r.path for r in records], dtype=str),
        "image_model": np.array([r.model for r in records], dtype=str),
        "image_label": np.array([label[r.model] for r in records], dtype=np.int64),
        "image_instance": np.array([r.instance for r in records], dtype=str),
        "image_scene": np.array([r.scene for r in records], dtype=str),
        "image_split": np.array([r.split for r in records], dtype=str),
        "patch_image": np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p, _ in used]),
        "patch_y": positions[:, 0].astype(np.int32),
        "patch_x": positions[:, 1].astype(np.int32),
        "patch_quality": np.concatenate([q for _, _, q in used]).astype(np.float32),
    }


def _summary(
    records: list[Record],
    used: list[tuple[int, np.ndarray, np.ndarray]],
    skipped: list[dict[str, str]],
) -> dict[str, Any]:
    """Images used, patches, skipped files with reasons, patches per split and model."""
    counts: dict[str, dict[str, int]] = {}
    for image_id, positions, _ in used:
        r = records[image_id]
        by_model = counts.setdefault(r.split, {})
        by_model[r.model] = by_model.get(r.model, 0) + len(positions)
    return {
        "images": len(used),
        "patches": sum(len(positions) for _, positions, _ in used),
        "skipped": skipped,
        "counts": counts,
    }


class _ShardWriter:
    """Append patches to ``.npy`` shards of ``shard_size`` rows with plain sequential writes.

    Each shard gets its header up front and its rows streamed after it, so no patch stays
    in memory; the last shard, shorter than announced, is rewritten with its true length.
    """

    def __init__(self, folder: Path, shard_size: int, size: int) -> None:
        self.folder = folder
        self.shard_size = shard_size
        self.shape = (size, size, 3)
        self.names: list[str] = []
        self.file: BinaryIO | None = None
        self.filled = 0

    def write(self, patches: np.ndarray) -> None:
        done = 0
        while done < len(patches):
            if self.file is None or self.filled == self.shard_size:
                self._next_shard()
            k = min(len(patches) - done, self.shard_size - self.filled)
            self.file.write(np.ascontiguousarray(patches[done : done + k], dtype=np.uint8).data)
            self.filled += k
            done += k

    def _next_shard(self) -> None:
        self._close_file()
        self.names.append(f"shard-{len(self.names):05d}.npy")
        self.file = (self.folder / self.names[-1]).open("wb")
        self._write_header(self.file, self.shard_size)
        self.filled = 0

    def _write_header(self, f: BinaryIO, rows: int) -> None:
        header = {"descr": "|u1", "fortran_order": False, "shape": (rows, *self.shape)}
        np.lib.format.write_array_header_1_0(f, header)

    def _close_file(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def close(self) -> list[str]:
        """Close the open shard, fix the last one's length, return the shard file names."""
        self._close_file()
        if self.names and self.filled < self.shard_size:
            last = self.folder / self.names[-1]
            part = last.with_suffix(".part")
            with last.open("rb") as src, part.open("wb") as dst:
                np.lib.format.read_magic(src)
                np.lib.format.read_array_header_1_0(src)
                self._write_header(dst, self.filled)
                shutil.copyfileobj(src, dst)
            part.replace(last)
        return self.names
