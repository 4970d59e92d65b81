"""Scenes: the linear radiance every simulated camera photographs.

Four sources, each with a stable id: dead-leaves charts (``dl0007``; the occlusion model
behind ISO 19567 texture charts, Cao et al. 2010), natural procedural views (``nat0007``:
landscapes, streets, still lifes; ``natural.py``), the colour photos shipped inside
scikit-image (``sk-coffee``) and a user's folder of photos (``user-<stem>``). Shot k of
every device shows scene k, so content never gives a camera away and splits can be
scene-disjoint. Scenes are rendered with a margin so each device can frame them a little
differently.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import colour
import cv2
import numpy as np
import skimage.data
from matplotlib.colors import hsv_to_rgb
from PIL import Image

from camtrace.data.simcam.natural import box_reduce, natural_scene, pink_noise
from camtrace.data.simcam.preset import DeadLeaves, SceneSpec
from camtrace.errors import CamtraceError

PHOTO_EXTS = (".jpg", ".jpeg", ".png")
SKIMAGE_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": skimage.data.astronaut,
    "coffee": skimage.data.coffee,
    "chelsea": skimage.data.chelsea,
    "rocket": skimage.data.rocket,
    "motorcycle": lambda: skimage.data.stereo_motorcycle()[0],
}
PLAN_STREAM, SCENE_STREAM = 1, 2  # SeedSequence stream tags
SUBPIXEL_BITS = 4  # cv2.circle fixed-point precision
ID_PREFIX = {"natural": "nat", "dead_leaves": "dl"}


@dataclass(frozen=True)
class Scene:
    """A scene id and where its pixels come from (``source``: skimage name or file path)."""

    id: str
    kind: str  # "dead_leaves" | "natural" | "skimage" | "file"
    source: str = ""


def plan_scenes(
    shots: int, seed: int, spec: SceneSpec, scenes_dir: str | Path | None = None
) -> list[Scene]:
    """The scene of each shot index: photos, natural views and dead leaves, each spread evenly.

    Photos from ``scenes_dir`` are all used (a seeded choice of ``shots`` if there are more);
    scikit-image photos then fill up to ``photo_share`` of the shots, natural views take
    ``natural_share`` of them (or what the photos left) and dead leaves the rest. Ids carry
    the shot index (``nat0007``, ``dl0012``), so a plan never repeats a scene.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, PLAN_STREAM]))
    user = _pick(rng, folder_photos(scenes_dir) if scenes_dir is not None else [], shots)
    n_sk = max(0, round(shots * spec.photo_share) - len(user))
    photos = user + _pick(rng, skimage_photos() if spec.skimage else [], n_sk)
    photos = [photos[j] for j in rng.permutation(len(photos))]
    n_natural = min(round(shots * spec.natural_share), shots - len(photos))
    counts = (len(photos), n_natural, shots - len(photos) - n_natural)
    scenes = []
    for k, (source, i) in enumerate(spread_evenly(counts)):
        if source == 0:
            scenes.append(photos[i])
        else:
            kind = ("natural", "dead_leaves")[source - 1]
            scenes.append(Scene(f"{ID_PREFIX[kind]}{k:04d}", kind))
    return scenes


def spread_evenly(counts: tuple[int, ...]) -> list[tuple[int, int]]:
    """(source, index) per shot: the i-th of a source's n items at (i + 1/2) / n of the way
    through the shots, ties to the earlier source, so every kind spreads evenly."""
    slots = [((2 * i + 1) / (2 * n), s, i) for s, n in enumerate(counts) for i in range(n)]
    return [(s, i) for _, s, i in sorted(slots)]


def _pick(rng: np.random.Generator, items: list[Scene], n: int) -> list[Scene]:
    """``items`` if ``n`` covers them all, else a seeded choice of ``n`` (kept in order)."""
    if n >= len(items):
        return items
    return [items[i] for i in sorted(rng.choice(len(items), n, replace=False))]


def skimage_photos() -> list[Scene]:
    """The scikit-image colour photos that load offline (some need a download: skipped)."""
    return [
        Scene(f"sk-{name}", "skimage", name)
        for name, load in SKIMAGE_PHOTOS.items()
        if _loads(load)
    ]


def _loads(load: Callable[[], np.ndarray]) -> bool:
    """Whether a scikit-image sample loads: a missing file needs pooch (ImportError) or the
    network (OSError), or its cached copy is corrupt (ValueError)."""
    try:
        load()
    except (ImportError, OSError, ValueError):
        return False
    return True


def folder_photos(scenes_dir: str | Path) -> list[Scene]:
    """JPEG/PNG files of ``scenes_dir`` (sorted), one scene each, id ``user-<stem>``."""
    folder = Path(scenes_dir)
    if not folder.is_dir():
        raise CamtraceError(
            f"scenes_dir {folder}: no such folder; pass a folder of JPEG/PNG photos"
        )
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_EXTS)
    if not files:
        raise CamtraceError(f"scenes_dir {folder}: no .jpg/.jpeg/.png files in it; add photos")
    stems = [p.stem for p in files]
    return [
        Scene(f"user-{p.stem if stems.count(p.stem) == 1 else p.name}", "file", str(p))
        for p in files
    ]


def render_scene(scene: Scene, shape: tuple[int, int], seed: int, spec: SceneSpec) -> np.ndarray:
    """Linear radiance (H, W, 3) float32 in [0, 1]; same (scene, shape, seed) -> same pixels."""
    entropy = [seed, SCENE_STREAM, zlib.crc32(scene.id.encode())]
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    if scene.kind == "dead_leaves":
        return dead_leaves(rng, shape, spec.dead_leaves)
    if scene.kind == "natural":
        return natural_scene(rng, shape)
    if scene.kind == "skimage":
        image = Image.fromarray(SKIMAGE_PHOTOS[scene.source]()[..., :3])
    else:
        image = _open_photo(Path(scene.source), shape)
    return photo_radiance(image, shape, rng)


def _open_photo(path: Path, shape: tuple[int, int]) -> Image.Image:
    try:
        image = Image.open(path)
        image.draft("RGB", (2 * shape[1], 2 * shape[0]))  # JPEG DCT scaling, still >= 2x frame
        return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:
        raise CamtraceError(f"{path}: unreadable photo ({e}); remove it from scenes_dir") from None


def photo_radiance(
    image: Image.Image, shape: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """A random crop of the frame's aspect, area-downscaled >= 2x, sRGB decoded to linear.

    The box downscale averages away most of the photo's own demosaicing and JPEG traces; a
    photo too small for that is reduced 2x and then stretched to cover the frame.
    """
    h, w = shape
    scale = min(image.height / h, image.width / w)
    factor = max(2, int(scale))
    ch, cw = (factor * h, factor * w) if scale >= 2 else (int(scale * h), int(scale * w))
    y0 = int(rng.integers(0, image.height - ch + 1))
    x0 = int(rng.integers(0, image.width - cw + 1))
    image = image.crop((x0, y0, x0 + cw, y0 + ch)).reduce(factor)
    if image.size != (w, h):
        image = image.resize((w, h), Image.Resampling.BICUBIC)
    encoded = np.asarray(image, dtype=np.float32) / 255.0
    return colour.models.eotf_sRGB(encoded).astype(np.float32)


def dead_leaves(rng: np.random.Generator, shape: tuple[int, int], spec: DeadLeaves) -> np.ndarray:
    """Occluding disks with radii ~ r^-3 (scale invariance), shaded and lightly textured.

    Disks are painted ``supersample`` times larger and box-averaged so their edges are
    anti-aliased like a continuous scene; uncovered gaps show a smooth gradient (label 0).
    The 1/f texture, already band-limited, is added at the final resolution.
    """
    s = spec.supersample
    h, w = shape[0] * s, shape[1] * s
    r_min, r_max = spec.r_min * s, max(spec.r_max * min(h, w), spec.r_min * s)
    n = _disk_count(h * w, r_min, r_max, spec.coverage)
    radius = _power_law_radii(rng, n, r_min, r_max)
    centre = rng.uniform((0, 0), (w, h), size=(n, 2))
    labels = _paint_disks(centre, radius, (h, w))
    centre = np.vstack([(w / 2, h / 2), centre])
    radius = np.concatenate([[max(h, w) / 2], radius])
    shaded = _leaf_colours(rng, n + 1)[labels] * _shading(rng, labels, centre, radius, spec)
    amplitude = spec.texture * rng.random(n + 1, dtype=np.float32) ** 2  # most leaves flat
    texture = box_reduce(amplitude[labels, None], s) * pink_noise(rng, shape)[..., None]
    return np.clip(box_reduce(shaded, s) * (1 + texture), 0, 1)


def _disk_count(area: float, r_min: float, r_max: float, coverage: float) -> int:
    """Disks whose summed area is ``coverage`` times the frame, for p(r) ~ r^-3 on [r_min,
    r_max]."""
    mean_r2 = 2 * np.log(r_max / r_min) / (r_min**-2 - r_max**-2) if r_max > r_min else r_min**2
    return max(1, int(np.ceil(coverage * area / (np.pi * mean_r2))))


def _power_law_radii(rng: np.random.Generator, n: int, r_min: float, r_max: float) -> np.ndarray:
    """Inverse-CDF samples of p(r) ~ r^-3 on [r_min, r_max] (the dead-leaves law)."""
    u = rng.random(n)
    return (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5


def _paint_disks(centre: np.ndarray, radius: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Label map: index (1-based) of the topmost disk, 0 where none; later disks on top."""
    labels = np.zeros(shape, np.int32)
    one = 1 << SUBPIXEL_BITS
    xy = np.round(centre * one).astype(int)
    rr = np.round(radius * one).astype(int)
    for i in range(len(rr)):  # OpenCV's rasteriser is the painter's algorithm, in C
        cv2.circle(
            labels, (int(xy[i, 0]), int(xy[i, 1])), int(rr[i]), i + 1, -1, cv2.LINE_8, SUBPIXEL_BITS
        )
    return labels


def _leaf_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """Linear RGB reflectances: uniform hue, mostly muted saturation, broad lightness."""
    hsv = np.stack([rng.random(n), 0.8 * rng.random(n) ** 2, rng.uniform(0.12, 0.95, n)], axis=1)
    return colour.models.eotf_sRGB(hsv_to_rgb(hsv)).astype(np.float32)


def _shading(
    rng: np.random.Generator,
    labels: np.ndarray,
    centre: np.ndarray,
    radius: np.ndarray,
    spec: DeadLeaves,
) -> np.ndarray:
    """Per-leaf linear illumination ramps of up to +-``shading`` across each leaf's radius."""
    slope = rng.uniform(-spec.shading, spec.shading, size=(len(radius), 2)) / radius[:, None]
    offset = 1 - (slope * centre).sum(axis=1)
    yy, xx = np.indices(labels.shape, dtype=np.float32)
    a, b, c = (v.astype(np.float32) for v in (slope[:, 0], slope[:, 1], offset))
    return np.maximum(c[labels] + a[labels] * xx + b[labels] * yy, 0.05)[..., None]
