"""SimCam-Bench: the one fixed protocol the pretrained zoo is trained and measured on.

Version 1 (issue 22): SimCam 3's ``default`` preset, its 10 models x 3 devices shooting 83
scenes (Dresden's scene count) at 768x1024 with seed 0; Bondi 2017's scene- and
device-disjoint split with seed 0 (11 evaluation scenes shot by an unseen device per model,
10 validation scenes, the rest for training); and one patch protocol per patch size: 64 px
Bondi's (the 32 best-quality patches of each image), 32 px Güera's (non-overlapping cells
drawn at random, 64 per image).

Anyone regenerates it deterministically (:func:`prepare_bench`); :func:`bench_digests`
measures the manifest, the image files and the patches, and :func:`verify_bench` compares
them with the ones recorded in ``bench_v<version>.json``, so a changed simulator cannot
silently change the benchmark: a new SimCam version means a new bench version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from camtrace.data.manifest import Manifest, Record
from camtrace.data.patch_store import PatchStore, build_patch_store, store_name
from camtrace.data.patches import PatchProtocol, get_protocol
from camtrace.data.simcam.pipeline import SIMCAM_VERSION, dataset_name, render, simulate
from camtrace.data.splits import split_manifest
from camtrace.errors import CamtraceError
from camtrace.hardware import cpu_model_and_isa
from camtrace.io import write_json, write_text

DIGEST_CHUNK = 4096  # patches hashed per read


@dataclass(frozen=True)
class Bench:
    """A frozen benchmark: the data, the split and the patches of each patch size."""

    version: int
    simcam_version: int
    preset: str
    shots: int
    size: tuple[int, int]
    seed: int
    eval_scene_frac: float
    val_scene_frac: float
    protocols: tuple[tuple[int, str, int], ...]  # (patch size, protocol, patches per image)

    @property
    def name(self) -> str:
        return f"simcam-bench-v{self.version}"

    def protocol(self, patch_size: int) -> PatchProtocol:
        """The bench's patch protocol at ``patch_size`` px."""
        for size, name, count in self.protocols:
            if size == patch_size:
                return get_protocol(name, size=size, count=count)
        sizes = ", ".join(str(s) for s, _, _ in self.protocols)
        raise CamtraceError(f"{self.name} has no {patch_size} px patches; it has {sizes} px")

    def split(self) -> dict[str, Any]:
        """The split's keyword arguments (:func:`camtrace.data.splits.split_manifest`)."""
        return {
            "protocol": "bondi",
            "eval_scene_frac": self.eval_scene_frac,
            "val_scene_frac": self.val_scene_frac,
        }

    def config_sections(self) -> dict[str, Any]:
        """The ``seed``, ``data`` and ``split`` sections of an experiment config on the bench."""
        return {
            "seed": self.seed,
            "data": {
                "source": "simulate",
                "preset": self.preset,
                "shots": self.shots,
                "size": list(self.size),
            },
            "split": self.split(),
        }


BENCH_V1 = Bench(
    version=1,
    simcam_version=3,
    preset="default",
    shots=83,
    size=(768, 1024),
    seed=0,
    eval_scene_frac=0.13,
    val_scene_frac=0.12,
    protocols=((64, "bondi", 32), (32, "guera", 64)),
)
BENCHES = {BENCH_V1.version: BENCH_V1}
LATEST = BENCH_V1.version


def get_bench(version: int = LATEST) -> Bench:
    """The bench of ``version``; refuses one this camtrace's SimCam cannot regenerate."""
    if version not in BENCHES:
        raise CamtraceError(f"no SimCam-Bench version {version}; known: {sorted(BENCHES)}")
    bench = BENCHES[version]
    if bench.simcam_version != SIMCAM_VERSION:
        raise CamtraceError(
            f"{bench.name} is SimCam {bench.simcam_version}'s data, this camtrace renders "
            f"SimCam {SIMCAM_VERSION}; install the camtrace release of that bench"
        )
    return bench


@dataclass(frozen=True)
class BenchData:
    """The bench on disk: its split manifest (paths relative to the images' folder, so its
    digest is the same on every machine) and the patch store of each patch size."""

    bench: Bench
    manifest: Manifest
    stores: dict[int, PatchStore]


def prepare_bench(
    workdir: str | Path = "data",
    patch_sizes: tuple[int, ...] | None = None,
    bench: Bench | None = None,
    workers: int = 2,
    progress: bool = True,
) -> BenchData:
    """Shoot, split and cut the bench under ``workdir`` (each stage cached, in the folders an
    experiment config with the bench's sections uses, so runs and the bench share them)."""
    bench = bench or get_bench()
    workdir = Path(workdir)
    photos = simulate(
        bench.preset,
        workdir / dataset_name(bench.preset, bench.shots, bench.size, bench.seed),
        shots=bench.shots,
        seed=bench.seed,
        size=bench.size,
        workers=workers,
        progress=progress,
    )
    manifest = split_manifest(photos, bench.split(), bench.seed)
    # cut from the saved table, as a run does, so runs and the bench share the stores
    saved = Manifest.load(manifest.save(workdir / f"{bench.name}-manifest.csv"))
    sizes = patch_sizes or tuple(s for s, _, _ in bench.protocols)
    stores = {}
    for size in sizes:
        protocol = bench.protocol(size)
        stores[size] = build_patch_store(
            saved,
            workdir / store_name(manifest, protocol),
            protocol=protocol,
            seed=bench.seed,
            workers=workers,
            progress=progress,
        )
    return BenchData(bench, manifest, stores)


def _images_digest(manifest: Manifest) -> str:
    h = hashlib.sha256()
    for record in manifest:
        h.update(record.path.encode() + b"\0" + manifest.abspath(record).read_bytes())
    return h.hexdigest()


def patches_digest(store: PatchStore) -> str:
    """SHA-256 of a store's patches (in store order) and of each patch's source image (its
    row in the manifest)."""
    h = hashlib.sha256()
    for start in range(0, len(store), DIGEST_CHUNK):
        idx = np.arange(start, min(start + DIGEST_CHUNK, len(store)))
        h.update(np.ascontiguousarray(store.patches(idx)).tobytes())
    h.update(np.ascontiguousarray(store.meta["image"], dtype=np.int64).tobytes())
    return h.hexdigest()


def bench_digests(data: BenchData) -> dict[str, Any]:
    """What the bench is, measured: its split manifest, image files and patch stores."""
    return {
        "bench": data.bench.name,
        "manifest": data.manifest.digest(),
        "images": _images_digest(data.manifest),
        "patches": {str(size): patches_digest(store) for size, store in data.stores.items()},
    }


def _digest_file(bench: Bench) -> Path:
    return Path(str(resources.files("camtrace.data") / f"bench_v{bench.version}.json"))


def recorded_digests(bench: Bench | None = None) -> dict[str, Any]:
    """The digests recorded when the bench was frozen (``bench_v<version>.json``)."""
    bench = bench or get_bench()
    return json.loads(_digest_file(bench).read_text())


def freeze_bench(data: BenchData) -> Path:
    """Freeze the bench (a maintainer's step, once): write its digests and its split
    manifest into the package (``bench_v<version>.json``, ``.csv``)."""
    path = _digest_file(data.bench)
    write_text(path.with_suffix(".csv"), data.manifest.to_csv_text())  # paths as simulated
    write_json(path, {**bench_digests(data), "rendered_on": ", ".join(cpu_model_and_isa())})
    return path


def verify_bench(data: BenchData) -> dict[str, Any]:
    """The bench's digests, checked against the recorded ones, cheapest first (the split
    manifest, the image files, each patch store): a mismatch is a one-line error naming what
    differs (the simulator, the split or the patch cutting changed)."""
    recorded = recorded_digests(data.bench)
    checks = [
        ("manifest", recorded["manifest"], data.manifest.digest),
        ("images", recorded["images"], lambda: _images_digest(data.manifest)),
        *(
            (
                f"{size} px patches",
                recorded["patches"].get(str(size)),
                lambda s=store: patches_digest(s),
            )
            for size, store in data.stores.items()
        ),
    ]
    for what, expected, measure in checks:
        if measure() != expected:
            raise CamtraceError(_mismatch(data, what, recorded.get("rendered_on")))
    return recorded


def _mismatch(data: BenchData, what: str, recorded: str | None) -> str:
    """The one-line error of :func:`verify_bench` (``recorded``: the machine that froze it)."""
    if what == "manifest":
        return (
            f"{data.bench.name}: the regenerated split manifest differs from the recorded one "
            f"(camtrace.data/bench_v{data.bench.version}.json): this camtrace's simulator or "
            "split is not the bench's; install the camtrace version that froze it"
        )
    return (
        f"{data.bench.name}: the {what} rendered here ({', '.join(cpu_model_and_isa())}) differ "
        f"from the recorded ones (camtrace.data/bench_v{data.bench.version}.json"
        + (f", rendered on {recorded}" if recorded else "")
        + "): another instruction set's float order or other library versions render the "
        "bench differently, so numbers measured on it are close to the zoo's but not the "
        "bench's (docs/zoo.md); install the pinned versions (constraints.txt), or run on a "
        "machine of the recorded instruction set"
    )


def eval_slice(manifest: Manifest, per_model: int) -> list[Record]:
    """A deterministic slice of the evaluation split: the first ``per_model`` images of
    each model in manifest order."""
    out: list[Record] = []
    for model in manifest.models:
        rows = [r for r in manifest if r.model == model and r.split == "eval"]
        out.extend(rows[:per_model])
    return out


def render_slice(records: list[Record], bench: Bench | None = None) -> list[np.ndarray]:
    """The decoded pixels of ``records`` of the bench, rendered in memory (no dataset)."""
    bench = bench or get_bench()
    by_shot = sorted(range(len(records)), key=lambda i: records[i].shot)  # one scene at a time
    images: list[np.ndarray] = [np.empty(0, np.uint8)] * len(records)
    for i in by_shot:
        images[i] = render(bench.preset, bench.shots, bench.seed, bench.size, records[i])
    return images


def bench_manifest(bench: Bench | None = None) -> Manifest:
    """The bench's split manifest without shooting it: the records ``simulate`` would list
    (shipped as ``bench_v<version>.csv``)."""
    return Manifest.load(_digest_file(bench or get_bench()).with_suffix(".csv"))
