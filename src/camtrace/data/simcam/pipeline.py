"""SimCam: every device of every camera model photographs every scene (``camtrace simulate``).

One image: scene -> framing and auto-exposure -> optics (lens distortion, CA, PSF,
vignetting, OLPF) -> sensor response -> Bayer CFA -> PRNU and noise at the shot's ISO ->
raw noise reduction -> white balance -> demosaicing -> colour matrix -> distortion
correction (a resampling) -> tone curve -> denoise/sharpen -> 8 bits -> JPEG with the
model's tables (a quality drawn per shot where the preset gives a range) and EXIF. Each
image draws its randomness from ``SeedSequence([seed, IMAGE_STREAM, crc32(device),
shot])``, so the files are byte-identical for a seed whatever the number of worker
processes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rich.progress import Progress

from camtrace.data.codec import Jpeg, camera_exif, save_image, stored
from camtrace.data.manifest import MANIFEST_NAME, Manifest, Record
from camtrace.data.simcam.isp import (
    LUMA,
    RESAMPLING,
    apply_matrix,
    apply_tone,
    colour_matrix,
    demosaic,
    finish,
    raw_denoise,
    to_uint8,
    tone_lut,
    white_balance_gains,
)
from camtrace.data.simcam.optics import apply_optics, radial_warp, sensor_border
from camtrace.data.simcam.preset import CameraModel, Exposure, Preset, load_preset
from camtrace.data.simcam.scenes import Scene, plan_scenes, render_scene
from camtrace.data.simcam.sensor import (
    cfa_gain_map,
    device_noise_gain,
    expose_raw,
    mosaic,
    noise_std,
    prnu_pattern,
    sensor_response,
    shot_iso,
)
from camtrace.errors import CamtraceError
from camtrace.io import write_json
from camtrace.processes import fresh_processes

SIMCAM_VERSION = 3  # bump when the pipeline changes what it renders: invalidates old outputs
CONFIG_NAME = "simcam.json"
IMAGES_DIR = "images"
IMAGE_STREAM = 5  # SeedSequence stream tag
MID_GREY = 0.18  # raw signal at which the ISP calibrates its noise reduction


def device_name(camera: CameraModel, instance: int) -> str:
    """The device id, ``Make_Model_instance`` (the manifest's ``device`` column)."""
    return f"{camera.label}_{instance}"


def shoot(
    camera: CameraModel,
    instance: int,
    scene: np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator,
) -> np.ndarray:
    """One photo (H, W, 3) uint8 of ``scene`` (linear radiance with a framing margin of at
    least :func:`scene_margin`).

    The sensor is larger than the photo by the camera's :func:`sensor_border` on each side,
    as a real camera's: the ISP corrects the lens distortion from real pixels and crops the
    output after, so no mirrored seam lines the frame's edge."""
    device = device_name(camera, instance)
    sensor, isp = camera.sensor, camera.isp
    b = sensor_border(camera.optics.distortion, size)
    full = (size[0] + 2 * b, size[1] + 2 * b)
    radius = math.hypot((size[0] - 1) / 2, (size[1] - 1) / 2)  # the lens is the output's
    radiance = auto_expose(frame(scene, full, rng), camera.exposure, rng)
    optical = apply_optics(radiance, camera.optics, radius)
    raw = mosaic(
        apply_matrix(optical, sensor_response(sensor.sensitivity, sensor.crosstalk)), camera.cfa
    )
    gain = shot_iso(sensor.iso, sensor.iso_stops, rng) / 100
    gain *= device_noise_gain(device, sensor.device_variation)
    raw = expose_raw(
        raw, rng, prnu_pattern(device, full, sensor.prnu), gain, sensor.full_well, sensor.read_noise
    )
    expected = noise_std(MID_GREY, gain, sensor.full_well, sensor.read_noise)
    raw = raw_denoise(raw, isp.raw_denoise * expected)
    wb = white_balance_gains(sensor.sensitivity, isp.wb_jitter, rng)
    raw = np.clip(raw * cfa_gain_map(full, camera.cfa, wb), 0, 1)
    rgb = apply_matrix(
        demosaic(raw, camera.cfa, camera.demosaic), colour_matrix(sensor.crosstalk, isp.saturation)
    )
    correction = RESAMPLING[isp.resampling]
    rgb = radial_warp(rgb, camera.optics.distortion, correction, radius)
    encoded = apply_tone(rgb, tone_lut(isp.tone_gamma, isp.contrast))
    return to_uint8(finish(encoded, isp)[b : b + size[0], b : b + size[1]])


def scene_margin(preset: Preset, size: tuple[int, int]) -> int:
    """The margin a scene is rendered with: the preset's framing margin plus the largest
    sensor border of its models."""
    borders = (sensor_border(c.optics.distortion, size) for c in preset.models)
    return preset.scenes.margin + max(borders, default=0)


def frame(scene: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The device's framing: a crop of ``size`` (the sensor's) at a random offset inside the
    scene margin."""
    h, w = size
    dy = int(rng.integers(0, scene.shape[0] - h + 1))
    dx = int(rng.integers(0, scene.shape[1] - w + 1))
    return scene[dy : dy + h, dx : dx + w]


def auto_expose(radiance: np.ndarray, exposure: Exposure, rng: np.random.Generator) -> np.ndarray:
    """Scale so mean luminance hits the model's metering ``target`` (times a per-shot error)."""
    mean = float(radiance.reshape(-1, 3).mean(axis=0) @ LUMA)
    target = exposure.target * float(np.exp(exposure.jitter * rng.standard_normal()))
    return radiance * np.float32(target / max(mean, 1e-4))


def dataset_name(preset: str | Path, shots: int, size: tuple[int, int], seed: int) -> str:
    """The folder name a workdir keeps ``simulate(preset, shots=shots, seed=seed, size=size)``
    under."""
    return f"simcam-{Path(preset).stem}-{shots}x{size[0]}x{size[1]}-s{seed}"


def simulate(
    preset: str | Path = "default",
    out: str | Path = "data/simcam",
    shots: int = 24,
    seed: int = 0,
    size: tuple[int, int] = (384, 512),
    scenes_dir: str | Path | None = None,
    workers: int = 2,
    progress: bool = True,
) -> Manifest:
    """Shoot ``shots`` scenes with every device of ``preset``; write JPEGs and the manifest.

    Files go to ``out/images/{Make}_{Model}_{instance}_{shot}.JPG`` and the table to
    ``out/manifest.csv`` (split left empty). A finished run with the same preset content,
    shots, seed, size and scenes (recorded in ``out/simcam.json``) is returned as is.
    ``workers > 1`` starts fresh processes (forkserver): from a script, call this under
    ``if __name__ == "__main__":``.
    """
    _check_args(shots, seed, size, workers)
    spec = load_preset(preset)
    size = (int(size[0]), int(size[1]))
    out = Path(out)
    scenes = plan_scenes(shots, seed, spec.scenes, scenes_dir)
    config = _config(spec, shots, seed, size, scenes)
    if _is_done(out, config):
        return Manifest.load(out / MANIFEST_NAME)
    (out / CONFIG_NAME).unlink(missing_ok=True)
    previous = _previous_files(out)
    job = _Job(spec, tuple(scenes), size, seed, out / IMAGES_DIR, _shot_width(shots))
    tasks = [
        (m, i, k)
        for k in range(shots)
        for m in range(len(spec.models))
        for i in range(spec.instances)
    ]
    _run(job, tasks, workers, progress)
    manifest = Manifest(sorted((job.record(*t) for t in tasks), key=_record_order), out)
    _remove_stale(previous, {manifest.abspath(r) for r in manifest})
    manifest.save(out / MANIFEST_NAME)
    write_json(out / CONFIG_NAME, config)
    return Manifest.load(out / MANIFEST_NAME)


def render(
    preset: str | Path,
    shots: int,
    seed: int,
    size: tuple[int, int],
    record: Record,
    scenes_dir: str | Path | None = None,
) -> np.ndarray:
    """The decoded pixels (H, W, 3) uint8 of one image of ``simulate(preset, shots=shots,
    seed=seed, size=size)``, named by its manifest ``record``, made in memory: the same
    pixels as the file, without shooting the rest of the dataset."""
    spec = load_preset(preset)
    size = (int(size[0]), int(size[1]))
    scenes = plan_scenes(shots, seed, spec.scenes, scenes_dir)
    job = _Job(spec, tuple(scenes), size, seed, Path(IMAGES_DIR), _shot_width(shots))
    labels = [c.label for c in spec.models]
    if record.model not in labels or not 0 <= int(record.shot) < shots:
        raise CamtraceError(
            f"{record.path}: not an image of the {spec.name} preset with {shots} shots"
        )
    rgb, jpeg = job.photo(labels.index(record.model), int(record.instance), int(record.shot))
    return stored(rgb, jpeg)


@dataclass(frozen=True)
class _Job:
    """What every worker needs to make any image of the run."""

    preset: Preset
    scenes: tuple[Scene, ...]
    size: tuple[int, int]
    seed: int
    images: Path
    shot_width: int

    def path(self, model: int, instance: int, shot: int) -> Path:
        c = self.preset.models[model]
        return self.images / f"{c.make}_{c.model}_{instance}_{shot:0{self.shot_width}d}.JPG"

    def record(self, model: int, instance: int, shot: int) -> Record:
        c = self.preset.models[model]
        path = f"{IMAGES_DIR}/{self.path(model, instance, shot).name}"  # relative to the manifest
        return Record(
            path,
            c.make,
            c.label,
            str(instance),
            self.scenes[shot].id,
            f"{shot:0{self.shot_width}d}",
        )

    def photo(self, model: int, instance: int, shot: int) -> tuple[np.ndarray, Jpeg]:
        """The image's pixels before its JPEG, and the JPEG setting it is saved with."""
        camera = self.preset.models[model]
        key = [self.seed, IMAGE_STREAM, zlib.crc32(device_name(camera, instance).encode()), shot]
        rng = np.random.default_rng(np.random.SeedSequence(key))
        scene = _scene_radiance(self.scenes[shot], self.size, self.seed, self.preset)
        rgb = shoot(camera, instance, scene, self.size, rng)
        return rgb, camera.jpeg.for_shot(rng)

    def make_image(self, model: int, instance: int, shot: int) -> None:
        camera = self.preset.models[model]
        rgb, jpeg = self.photo(model, instance, shot)
        exif = camera_exif(camera.make, camera.model)
        save_image(self.path(model, instance, shot), rgb, jpeg, exif=exif)


@functools.lru_cache(maxsize=2)
def _scene_radiance(scene: Scene, size: tuple[int, int], seed: int, preset: Preset) -> np.ndarray:
    """The scene with its :func:`scene_margin`, cached: tasks come scene by scene."""
    m = scene_margin(preset, size)
    radiance = render_scene(scene, (size[0] + 2 * m, size[1] + 2 * m), seed, preset.scenes)
    radiance.setflags(write=False)
    return radiance


_WORKER_JOB: _Job | None = None


def _init_worker(job: _Job) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job
    cv2.setNumThreads(1)  # one process per core already


def _work(task: tuple[int, int, int]) -> None:
    assert _WORKER_JOB is not None
    _WORKER_JOB.make_image(*task)


def _run(job: _Job, tasks: list[tuple[int, int, int]], workers: int, progress: bool) -> None:
    """Make every image, inline (``workers=1``) or in a process pool, with a progress bar."""
    with _progress(progress, len(tasks)) as advance:
        if workers == 1:
            for task in tasks:
                job.make_image(*task)
                advance()
            return
        with ProcessPoolExecutor(
            workers, mp_context=fresh_processes(__name__), initializer=_init_worker, initargs=(job,)
        ) as pool:
            futures = [pool.submit(_work, task) for task in tasks]
            try:
                for future in as_completed(futures):
                    future.result()
                    advance()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    with Progress(transient=True) as bar:
        task = bar.add_task("SimCam: shooting", total=total)
        yield lambda: bar.advance(task)


def _check_args(shots: int, seed: int, size: tuple[int, int], workers: int) -> None:
    if int(shots) < 1:
        raise CamtraceError(f"shots={shots}: must be at least 1")
    if int(seed) < 0:
        raise CamtraceError(f"seed={seed}: must be a non-negative integer")
    if len(size) != 2 or min(size) < 16:
        raise CamtraceError(f"size={tuple(size)}: must be (height, width), each at least 16")
    if int(workers) < 1:
        raise CamtraceError(f"workers={workers}: must be at least 1")


def _shot_width(shots: int) -> int:
    return max(4, len(str(shots - 1)))


def _record_order(r: Record) -> tuple[str, int, str]:
    return r.model, int(r.instance), r.shot


def _config(
    spec: Preset, shots: int, seed: int, size: tuple[int, int], scenes: list[Scene]
) -> dict:
    """Everything the output depends on; a run matching it is not redone."""
    return {
        "simcam_version": SIMCAM_VERSION,
        "preset": spec.name,
        "preset_sha256": spec.sha256,
        "shots": int(shots),
        "seed": int(seed),
        "size": list(size),
        "scenes": [s.id for s in scenes],
        "scene_files_sha256": {
            s.id: _file_sha256(Path(s.source)) for s in scenes if s.kind == "file"
        },
    }


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_done(out: Path, config: dict) -> bool:
    """True when ``out`` holds a complete run made with exactly ``config``."""
    try:
        if json.loads((out / CONFIG_NAME).read_text()) != config:
            return False
        manifest = Manifest.load(out / MANIFEST_NAME)
    except (OSError, ValueError, CamtraceError):
        return False
    return all(manifest.abspath(r).is_file() for r in manifest)


def _previous_files(out: Path) -> set[Path]:
    """Images listed by an earlier manifest in ``out`` (removed if the new run drops them)."""
    try:
        manifest = Manifest.load(out / MANIFEST_NAME)
    except (CamtraceError, OSError, ValueError):
        return set()
    images = (out / IMAGES_DIR).resolve()
    return {p for p in (manifest.abspath(r).resolve() for r in manifest) if p.parent == images}


def _remove_stale(previous: set[Path], current: set[Path]) -> None:
    keep = {p.resolve() for p in current}
    for path in previous - keep:
        path.unlink(missing_ok=True)
