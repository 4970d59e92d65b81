"""Natural procedural scenes: what photographs are made of, painted as linear radiance.

Three kinds of view, one picked per scene: a landscape (gradient sky with clouds, hazy hills
with a 1/f skyline, a meadow with flowers, trees of leafy clutter, rocks, a lake with sun
glints), a street (facades with window grids, shop signs with text, striped awnings, lamp
posts, cars, the cast shadow of the houses opposite) and an indoor still life (a wall lit
from a window, a printed poster, a woven tablecloth, books, bottles, cups and fruit).

What makes them photograph-like: objects of all sizes occlude each other and the background
(the dead-leaves argument for a ~1/f^2 power spectrum, Ruderman 1997), surfaces carry 1/f
grain or a woven texture, light falls off smoothly with soft-edged cast shadows down to
near-black, some paints are fully saturated, and glossy things carry specular highlights
brighter than any diffuse surface (``DIFFUSE_MAX``), so some clip in the camera.
Objects are painted as labels ``SUPERSAMPLE`` times larger and box-averaged: every edge is
anti-aliased and the scene has no pixel grid of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import colour
import cv2
import numpy as np
import scipy.fft
from matplotlib.colors import hsv_to_rgb

SUPERSAMPLE = 3  # label-painting scale; box-averaging it anti-aliases every edge
SHIFT = 4  # cv2 fixed-point bits: vertices at 1/16 of a supersampled pixel
DIFFUSE_MAX = 0.6  # radiance of a white surface in full light; highlights reach 1
FONT = cv2.FONT_HERSHEY_SIMPLEX
LETTERS = "abcdefghijklmnopqrstuvwxyz"

# material columns: encoded HSV paint, then sky coverage, 1/f grain, weave amplitude,
# weave period (px) and weave angle (rad)
HSV, SKY, GRAIN, WEAVE, PERIOD, ANGLE = slice(0, 3), 3, 4, 5, 6, 7


@dataclass
class Canvas:
    """A scene under construction: surfaces painted back to front as material labels on a
    supersampled grid (the painter's algorithm), plus the light that falls on them."""

    shape: tuple[int, int]
    rng: np.random.Generator
    materials: list[tuple[float, ...]] = field(default_factory=list)
    glints: list[tuple[float, float, float, float]] = field(default_factory=list)
    ambient: float = 0.15  # light reaching shadowed surfaces, relative to direct light
    direct: np.ndarray | float = 1.0  # direct light (H, W), smooth
    sky: np.ndarray | None = None  # (H, W, 3) sky radiance in [0, 1], where SKY covers

    def __post_init__(self) -> None:
        h, w = self.shape
        self.labels = np.zeros((h * SUPERSAMPLE, w * SUPERSAMPLE), np.int32)
        self.shadows = np.zeros(self.shape, np.float32)

    @property
    def size(self) -> float:
        """The frame's short side, px: the unit every painter sizes things in."""
        return float(min(self.shape))

    def material(
        self,
        hsv: tuple[float, float, float],
        grain: float = 0.0,
        weave: float = 0.0,
        period: float = 4.0,
        angle: float = 0.0,
        sky: bool = False,
    ) -> int:
        """A new paint (sRGB-encoded hue, saturation, value) with its texture; its label."""
        self.materials.append((*hsv, float(sky), grain, weave, period, angle))
        return len(self.materials) - 1

    def polygon(self, points: np.ndarray, label: int) -> None:
        """Fill a polygon given in frame pixels (float (N, 2) x, y)."""
        cv2.fillPoly(self.labels, [_fixed(points)], (label,), cv2.LINE_8, SHIFT)

    def rect(self, x0: float, y0: float, x1: float, y1: float, label: int) -> None:
        self.polygon(np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)]), label)

    def ellipse(
        self, centre: tuple[float, float], axes: tuple[float, float], angle: float, label: int
    ) -> None:
        """Fill an ellipse (semi-axes in px, angle in degrees)."""
        cv2.ellipse(
            self.labels,
            tuple(_fixed(np.array(centre))),
            tuple(_fixed(np.maximum(axes, 0.1))),
            angle,
            0,
            360,
            (label,),
            -1,
            cv2.LINE_8,
            SHIFT,
        )

    def text(
        self, words: str, x: float, y: float, height: float, label: int, width: float | None = None
    ) -> None:
        """Print ``words`` with its baseline-left corner at (x, y), cap height ``height`` px,
        cut off after ``width`` px."""
        scale = height * SUPERSAMPLE / cv2.getTextSize("H", FONT, 1.0, 1)[0][1]
        thick = max(1, round(scale * 2))
        (tw, th), base = cv2.getTextSize(words, FONT, scale, thick)
        x0, y0 = round(x * SUPERSAMPLE), round(y * SUPERSAMPLE)
        ink = np.zeros((th + base + 2 * thick, tw + 2 * thick), np.uint8)
        cv2.putText(ink, words, (thick, th + thick), FONT, scale, 255, thick, cv2.LINE_8)
        if width is not None:
            ink = ink[:, : thick + round(width * SUPERSAMPLE)]
        top, left = y0 - th - thick, x0 - thick
        region = self.labels[max(top, 0) : top + ink.shape[0], max(left, 0) : left + ink.shape[1]]
        ink = ink[max(-top, 0) :, max(-left, 0) :][: region.shape[0], : region.shape[1]]
        region[ink > 0] = label

    def shadow(self, points: np.ndarray) -> None:
        """Block the direct light over a polygon (frame pixels); its edge is softened later."""
        cv2.fillPoly(self.shadows, [_fixed(points / SUPERSAMPLE)], (1.0,), cv2.LINE_8, SHIFT)

    def shadow_ellipse(self, centre: tuple[float, float], axes: tuple[float, float]) -> None:
        pts = cv2.ellipse2Poly((0, 0), (1000, 1000), 0, 0, 360, 10).astype(np.float64) / 1000
        self.shadow(np.asarray(centre) + pts * np.asarray(axes))

    def glint(self, x: float, y: float, radius: float, peak: float) -> None:
        """A specular highlight: a Gaussian spot of ``peak`` radiance over the diffuse."""
        self.glints.append((x, y, max(radius, 0.7), peak))


def _fixed(points: np.ndarray) -> np.ndarray:
    """Frame-pixel coordinates as cv2 fixed-point ints on the supersampled grid."""
    return np.round(np.asarray(points) * (SUPERSAMPLE << SHIFT)).astype(np.int32)


def natural_scene(
    rng: np.random.Generator, shape: tuple[int, int], kind: str | None = None
) -> np.ndarray:
    """Linear radiance (H, W, 3) float32 in [0, 1] of one view; ``kind`` (a key of
    ``KINDS``) defaults to a choice by ``rng``."""
    if kind is None:
        kind = list(KINDS)[int(rng.integers(len(KINDS)))]
    canvas = Canvas(shape, rng)
    KINDS[kind](canvas)
    return develop(canvas)


def develop(canvas: Canvas) -> np.ndarray:
    """The canvas as radiance: box-averaged paint x light x texture, plus sky and glints."""
    h, w = canvas.shape
    table = np.asarray(canvas.materials, np.float32)
    reflectance = colour.models.eotf_sRGB(hsv_to_rgb(table[:, HSV])).astype(np.float32)
    per_label = np.concatenate([reflectance, table[:, SKY : WEAVE + 1]], axis=1)
    mixed = box_reduce(per_label[canvas.labels], SUPERSAMPLE)
    centre = canvas.labels[SUPERSAMPLE // 2 :: SUPERSAMPLE, SUPERSAMPLE // 2 :: SUPERSAMPLE]
    grain = pink_noise(canvas.rng, (h, w))
    texture = 1 + mixed[..., GRAIN] * grain
    texture += mixed[..., WEAVE] * weave(table[centre, PERIOD], table[centre, ANGLE])
    blur = 0.6 + 0.006 * canvas.size  # penumbra, px
    lit = 1 - cv2.GaussianBlur(canvas.shadows, (0, 0), blur)
    light = canvas.ambient + (1 - canvas.ambient) * canvas.direct * lit
    radiance = mixed[..., :3] * (np.maximum(texture, 0) * light)[..., None]
    if canvas.sky is not None:
        radiance += mixed[..., SKY, None] * canvas.sky
    radiance = DIFFUSE_MAX * radiance + highlights(canvas.glints, (h, w))[..., None]
    return np.clip(radiance, 0, 1).astype(np.float32)


def weave(period: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """A plain-weave cloth texture in [-1, 1]: crossed threads of ``period`` px along
    ``angle``; the highest frequency, sqrt(2) / period, stays below Nyquist for period > 3."""
    yy, xx = np.indices(period.shape, dtype=np.float32)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
    v = (yy * np.cos(angle) - xx * np.sin(angle)) * (2 * np.pi / period)
    return np.sin(u) * np.sin(v)


def highlights(glints: list[tuple[float, float, float, float]], shape: tuple[int, int]):
    """Specular spots: Gaussians of the given peak radiance, summed (H, W) float32."""
    out = np.zeros(shape, np.float32)
    for x, y, sigma, peak in glints:
        r = int(np.ceil(3 * sigma))
        x0, y0 = max(int(x) - r, 0), max(int(y) - r, 0)
        x1, y1 = min(int(x) + r + 2, shape[1]), min(int(y) + r + 2, shape[0])
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] += peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return out


def box_reduce(image: np.ndarray, s: int) -> np.ndarray:
    """Mean over s x s blocks of an (H*s, W*s, C) array."""
    if s == 1:
        return image
    h, w = image.shape[:2]
    out = cv2.resize(image, (w // s, h // s), interpolation=cv2.INTER_AREA)  # exact box mean
    return out.reshape(h // s, w // s, -1)


def pink_noise(
    rng: np.random.Generator, shape: tuple[int, int], exponent: float = 1.0
) -> np.ndarray:
    """Zero-mean, unit-std noise with a 1/f amplitude spectrum (natural-image statistics);
    a larger ``exponent`` (f^-exponent) gives smoother fields, such as clouds."""
    spectrum = scipy.fft.rfft2(rng.standard_normal(shape, dtype=np.float32))
    fy = scipy.fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fx = scipy.fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = np.inf  # no DC: zero mean
    field = scipy.fft.irfft2(spectrum / f**exponent, s=shape)
    return field / field.std()


def skyline(rng: np.random.Generator, n: int, roughness: float = 1.5) -> np.ndarray:
    """A 1-D fractal profile of ``n`` points in [-1, 1]: amplitude spectrum f^-roughness
    (hills and ridges look like Brownian profiles)."""
    f = np.fft.rfftfreq(2 * n)
    f[0] = np.inf
    spectrum = (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size)) * f**-roughness
    profile = np.fft.irfft(spectrum, 2 * n)[:n]
    return profile / max(np.abs(profile).max(), 1e-9)


def gradient_sky(canvas: Canvas, horizon: float) -> None:
    """Deep blue overhead fading to pale haze at the horizon, with 1/f clouds."""
    rng = canvas.rng
    h, w = canvas.shape
    y = np.clip(np.arange(h, dtype=np.float32) / max(horizon, 1), 0, 1)[:, None, None] ** 0.7
    zenith = paint(rng, rng.uniform(0.55, 0.63), rng.uniform(0.45, 0.8), rng.uniform(0.6, 0.85))
    haze = paint(rng, rng.uniform(0.5, 0.62), rng.uniform(0.05, 0.2), rng.uniform(0.88, 0.97))
    sky = zenith + (haze - zenith) * y
    cloud = np.clip(pink_noise(rng, (h, w), 1.4) - rng.uniform(0.3, 1.5), 0, 1)[..., None]
    canvas.sky = (sky + (0.95 - sky) * cloud).astype(np.float32)
    canvas.material((0, 0, 0), sky=True)


def paint(rng: np.random.Generator, hue: float, sat: float, val: float) -> np.ndarray:
    """Linear RGB of an sRGB-encoded HSV colour."""
    return colour.models.eotf_sRGB(hsv_to_rgb([hue % 1, sat, val])).astype(np.float32)


def sun(canvas: Canvas) -> tuple[float, float]:
    """A sun from the left or right: direct light ramping +-25% across the frame; the
    horizontal offset of a cast shadow per px of height, as (dx, dy)."""
    rng = canvas.rng
    side = rng.choice((-1.0, 1.0))
    xx = np.linspace(-1, 1, canvas.shape[1], dtype=np.float32)[None, :]
    yy = np.linspace(-1, 1, canvas.shape[0], dtype=np.float32)[:, None]
    canvas.direct = 1 - 0.25 * side * xx - rng.uniform(0, 0.15) * yy
    canvas.ambient = float(rng.uniform(0.08, 0.25))
    return side * rng.uniform(0.3, 1.2), rng.uniform(0.1, 0.3)


def landscape(canvas: Canvas) -> None:
    """Sky, hazy hills, a meadow (maybe a lake), trees, rocks and flowers; sunlit."""
    rng, (h, w), s = canvas.rng, canvas.shape, canvas.size
    horizon = h * rng.uniform(0.3, 0.6)
    gradient_sky(canvas, horizon)
    shadow_dir = sun(canvas)
    x = np.linspace(-2, w + 2, 64)
    for depth in np.linspace(1, 0, int(rng.integers(1, 4)), endpoint=False):
        top = horizon - h * rng.uniform(0.04, 0.2) * depth * (1 + skyline(rng, x.size))
        hill = canvas.material(
            (rng.uniform(0.25, 0.6), 0.4 * (1 - depth) + 0.1, 0.35 + 0.4 * depth), grain=0.1
        )
        canvas.polygon(np.column_stack([np.r_[x, w + 2, -2], np.r_[top, h + 2, h + 2]]), hill)
    ground = canvas.material(
        (rng.uniform(0.12, 0.3), rng.uniform(0.35, 0.75), rng.uniform(0.3, 0.6)), grain=0.45
    )
    canvas.polygon(np.array([(-2, horizon), (w + 2, horizon), (w + 2, h + 2), (-2, h + 2)]), ground)
    if rng.random() < 0.5:
        lake(canvas, horizon)
    things = [(rng.uniform(horizon, h), rng.random() < 0.6) for _ in range(rng.integers(3, 9))]
    for base, is_tree in sorted(things):  # far first: nearer things occlude
        near = 0.3 + (base - horizon) / (h - horizon)
        (tree if is_tree else rock)(canvas, rng.uniform(0, w), base, near * s, shadow_dir)
    for _ in range(int(rng.integers(0, 60))):
        y = rng.uniform(horizon + 0.6 * (h - horizon), h)
        r = 0.003 * s * (1 + 3 * (y - horizon) / (h - horizon))
        petal = canvas.material((rng.choice((0.0, 0.14, 0.8, 0.95)), rng.uniform(0.8, 1), 0.95))
        canvas.ellipse((rng.uniform(0, w), y), (r, r * 0.8), rng.uniform(0, 180), petal)


def lake(canvas: Canvas, horizon: float) -> None:
    """Still water reflecting the sky, with a band of sun glints."""
    rng, (h, w) = canvas.rng, canvas.shape
    cy, ry = horizon + (h - horizon) * rng.uniform(0.1, 0.3), (h - horizon) * rng.uniform(0.05, 0.2)
    cx, rx = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.6) * w
    water = canvas.material((rng.uniform(0.5, 0.6), rng.uniform(0.3, 0.6), 0.45), grain=0.1)
    canvas.ellipse((cx, cy), (rx, ry), 0, water)
    for _ in range(int(rng.integers(5, 30))):
        a = rng.uniform(0, 2 * np.pi)
        r = np.sqrt(rng.random()) * 0.8
        canvas.glint(cx + rx * r * np.cos(a), cy + ry * r * np.sin(a), 0.8, rng.uniform(0.4, 0.9))


def tree(
    canvas: Canvas, x: float, base: float, scale: float, shadow_dir: tuple[float, float]
) -> None:
    """A trunk under a crown of overlapping leaves (leafy clutter, lit from the sun's side)."""
    rng = canvas.rng
    crown = scale * rng.uniform(0.1, 0.25) * np.array([1, rng.uniform(0.8, 1.3)])
    height = crown[1] * rng.uniform(1, 2.2)  # base to crown centre
    trunk = canvas.material((rng.uniform(0.05, 0.1), 0.5, rng.uniform(0.15, 0.35)), grain=0.2)
    half = 0.08 * crown[0] + 0.4
    canvas.polygon(
        np.array(
            [
                (x - half, base),
                (x - 0.6 * half, base - height),
                (x + 0.6 * half, base - height),
                (x + half, base),
            ]
        ),
        trunk,
    )
    centre = (x + shadow_dir[0] * height, base + 0.1 * crown[0])
    canvas.shadow_ellipse(centre, (crown[0], 0.25 * crown[0]))
    leaf_size = 0.012 * scale + 0.5
    n = int(min(3 * crown[0] * crown[1] / (0.5 * leaf_size**2), 2500))
    angle = rng.uniform(0, 2 * np.pi, n)
    r = np.sqrt(rng.random(n))
    lx = x + crown[0] * r * np.cos(angle)
    ly = base - height + crown[1] * r * np.sin(angle)
    sunny = np.clip(
        0.5 - 0.5 * r * np.cos(angle) * np.sign(shadow_dir[0]) - 0.3 * r * np.sin(angle), 0, 1
    )
    hsv = np.column_stack(
        [
            rng.uniform(0.18, 0.36) + rng.normal(0, 0.03, n),
            rng.uniform(0.4, 0.9, n),
            0.08 + 0.5 * sunny * rng.random(n),
        ]
    )
    size = leaf_size * rng.uniform(0.6, 1.4, n)
    for i in range(n):
        leaf = canvas.material(tuple(hsv[i]))
        canvas.ellipse((lx[i], ly[i]), (size[i], 0.5 * size[i]), rng.uniform(0, 180), leaf)


def rock(
    canvas: Canvas, x: float, base: float, scale: float, shadow_dir: tuple[float, float]
) -> None:
    """An irregular grey boulder with its cast shadow."""
    rng = canvas.rng
    r = scale * rng.uniform(0.03, 0.1)
    a = np.sort(rng.uniform(0, 2 * np.pi, 9))
    radius = r * rng.uniform(0.7, 1.1, a.size)
    pts = np.column_stack([x + radius * np.cos(a), base - 0.6 * r + 0.6 * radius * np.sin(a)])
    canvas.shadow_ellipse((x + shadow_dir[0] * r, base), (1.2 * r, 0.25 * r))
    stone = canvas.material(
        (rng.uniform(0.05, 0.15), rng.uniform(0, 0.2), rng.uniform(0.3, 0.7)), grain=0.35
    )
    canvas.polygon(pts, stone)


def words(rng: np.random.Generator, n: int, caps: bool = False) -> str:
    """``n`` random words of 2-8 letters (glyph strokes like print, no meaning)."""
    text = " ".join("".join(rng.choice(list(LETTERS), rng.integers(2, 9))) for _ in range(n))
    return text.upper() if caps else text


def vivid(rng: np.random.Generator) -> tuple[float, float, float]:
    """A saturated paint: any hue at near-full chroma."""
    return rng.random(), rng.uniform(0.8, 1.0), rng.uniform(0.6, 0.95)


def street(canvas: Canvas) -> None:
    """A row of facades with window grids, shop fronts, lamp posts and parked cars; the
    houses opposite cast a shadow across part of the frame."""
    rng, (h, w), s = canvas.rng, canvas.shape, canvas.size
    kerb = h * rng.uniform(0.72, 0.88)
    gradient_sky(canvas, kerb)
    sun(canvas)
    x = -rng.uniform(0, 0.3) * w
    while x < w:
        width = w * rng.uniform(0.2, 0.5)
        facade(canvas, x, x + width, h * rng.uniform(0.02, 0.4), kerb)
        x += width
    pavement = canvas.material((0.1, rng.uniform(0, 0.15), rng.uniform(0.5, 0.75)), grain=0.2)
    canvas.rect(-2, kerb, w + 2, kerb + 0.06 * h, pavement)
    road = canvas.material((0.6, 0.05, rng.uniform(0.15, 0.3)), grain=0.3)
    canvas.rect(-2, kerb + 0.06 * h, w + 2, h + 2, road)
    marking = canvas.material((0.15, 0.1, 0.9), grain=0.1)
    y, dash = (kerb + 0.06 * h + h) / 2, w * rng.uniform(0.05, 0.15)
    for x0 in np.arange(rng.uniform(-dash, 0), w, 2.2 * dash):
        canvas.rect(x0, y, x0 + dash, y + 0.006 * s + 0.5, marking)
    for _ in range(int(rng.integers(0, 3))):
        x = rng.uniform(0, w)
        post = canvas.material((0, 0, rng.uniform(0.05, 0.2)))
        canvas.rect(
            x - 0.004 * s - 0.3, kerb - 0.45 * h, x + 0.004 * s + 0.3, kerb + 0.03 * h, post
        )
        canvas.ellipse((x, kerb - 0.45 * h), (0.02 * s, 0.012 * s), 0, post)
        canvas.glint(x, kerb - 0.44 * h, 0.006 * s, rng.uniform(0.5, 0.9))
    for _ in range(int(rng.integers(0, 3))):
        car(canvas, rng.uniform(-0.1, 1) * w, kerb + 0.06 * h + rng.uniform(0.02, 0.1) * h)
    slope = rng.uniform(-0.4, 0.4)
    edge = h * rng.uniform(0.2, 1.0) + slope * (np.array([0, w]) - w / 2)
    canvas.shadow(np.array([(-2, edge[0]), (w + 2, edge[1]), (w + 2, h + 2), (-2, h + 2)]))


def facade(canvas: Canvas, x0: float, x1: float, top: float, kerb: float) -> None:
    """A house front: storeys of framed windows (some catching the sun), a door and maybe a
    shop sign with its name under a striped awning."""
    rng, s = canvas.rng, canvas.size
    wall = canvas.material(
        (rng.uniform(0.0, 0.15), rng.uniform(0.1, 0.6), rng.uniform(0.35, 0.9)), grain=0.15
    )
    canvas.rect(x0, top, x1, kerb, wall)
    storey = s * rng.uniform(0.08, 0.16)
    bay = storey * rng.uniform(0.7, 1.2)
    frame = canvas.material((0.1, 0.05, rng.uniform(0.1, 0.95)))
    shop = rng.random() < 0.6
    floors = np.arange(top + 0.3 * storey, kerb - (1.6 if shop else 1.1) * storey, storey)
    for y in floors:
        for x in np.arange(x0 + 0.3 * bay, x1 - 0.8 * bay, bay):
            ww, wh = 0.5 * bay, 0.6 * storey
            canvas.rect(
                x - 0.04 * bay, y - 0.04 * bay, x + ww + 0.04 * bay, y + wh + 0.04 * bay, frame
            )
            lit = rng.random() < 0.15
            glass = canvas.material(
                (0.13, 0.6, 0.9) if lit else (rng.uniform(0.5, 0.65), 0.3, rng.uniform(0.05, 0.3))
            )
            canvas.rect(x, y, x + ww, y + wh, glass)
            canvas.rect(x + 0.47 * ww, y, x + 0.53 * ww, y + wh, frame)
            if rng.random() < 0.2:
                canvas.glint(x + 0.25 * ww, y + 0.2 * wh, 0.01 * s, rng.uniform(0.5, 1.0))
    door = canvas.material((rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.4)))
    dx = rng.uniform(x0, max(x0, x1 - 0.5 * bay))
    canvas.rect(dx, kerb - 1.0 * storey, dx + 0.45 * bay, kerb, door)
    if shop and x1 - x0 > 2 * bay:
        sign, ink = canvas.material(vivid(rng)), canvas.material((0, 0, rng.choice((0.05, 0.95))))
        y = kerb - 1.45 * storey
        canvas.rect(x0 + 0.1 * bay, y, x1 - 0.1 * bay, y + 0.25 * storey, sign)
        canvas.text(words(rng, 2, caps=True), x0 + 0.2 * bay, y + 0.19 * storey, 0.13 * storey, ink)
        stripes = (canvas.material(vivid(rng)), canvas.material((0, 0, 0.95)))
        step = rng.uniform(0.1, 0.25) * bay
        for i, x in enumerate(np.arange(x0 + 0.1 * bay, x1 - 0.1 * bay, step)):
            canvas.rect(x, y + 0.27 * storey, x + step, y + 0.45 * storey, stripes[i % 2])
        canvas.shadow(
            np.array(
                [
                    (x0, y + 0.45 * storey),
                    (x1, y + 0.45 * storey),
                    (x1, y + 0.7 * storey),
                    (x0, y + 0.7 * storey),
                ]
            )
        )


def car(canvas: Canvas, x: float, base: float) -> None:
    """A parked car: glossy paint with highlights, dark windows, black tyres, a shadow."""
    rng, s = canvas.rng, canvas.size
    length, height = s * rng.uniform(0.35, 0.5), s * rng.uniform(0.09, 0.12)
    canvas.shadow(
        np.array(
            [
                (x, base - 0.1 * height),
                (x + length, base - 0.1 * height),
                (x + length, base + 0.15 * height),
                (x, base + 0.15 * height),
            ]
        )
    )
    body, window, tyre = (
        canvas.material(vivid(rng) if rng.random() < 0.6 else (0, 0, rng.uniform(0.1, 0.9))),
        canvas.material((0.6, 0.2, 0.12)),
        canvas.material((0, 0, 0.06)),
    )
    cabin = np.array([(0.2, 0), (0.3, -0.7), (0.7, -0.7), (0.85, 0)])
    canvas.polygon(np.array([x, base - 0.7 * height]) + cabin * [length, height], body)
    canvas.polygon(
        np.array([x, base - 0.75 * height]) + cabin * [length, 0.85 * height] * [1, 0.8], window
    )
    canvas.rect(x, base - 0.8 * height, x + length, base - 0.2 * height, body)
    for wx in (0.2, 0.8):
        canvas.ellipse(
            (x + wx * length, base - 0.2 * height), (0.22 * height, 0.22 * height), 0, tyre
        )
    for _ in range(3):
        canvas.glint(
            x + rng.uniform(0.1, 0.9) * length,
            base - 0.75 * height,
            0.006 * s,
            rng.uniform(0.5, 1.0),
        )


def still_life(canvas: Canvas) -> None:
    """A table by a window: a wall with a printed poster, a woven tablecloth, and books,
    bottles, cups and fruit casting shadows; below the table edge it is dark."""
    rng, (h, w), s = canvas.rng, canvas.shape, canvas.size
    side = rng.choice((-1.0, 1.0))
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    canvas.direct = np.exp(-1.2 * (1 + side * xx) - 0.3 * yy**2)  # window light falls off
    canvas.ambient = float(rng.uniform(0.04, 0.12))
    canvas.material(
        (rng.random(), rng.uniform(0, 0.4), rng.uniform(0.5, 0.9)), grain=rng.uniform(0.03, 0.1)
    )
    table = h * rng.uniform(0.5, 0.65)
    edge = h * rng.uniform(0.85, 1.1)
    poster(canvas, rng.uniform(0, 0.6) * w, rng.uniform(0.05, 0.2) * h, table)
    cloth = canvas.material(
        vivid(rng) if rng.random() < 0.5 else (rng.random(), rng.uniform(0, 0.3), 0.85),
        grain=0.1,
        weave=rng.uniform(0.15, 0.35),
        period=rng.uniform(3.5, 7),
        angle=rng.uniform(-0.3, 0.3),
    )
    canvas.rect(-2, table, w + 2, edge, cloth)
    under = canvas.material((0.08, 0.4, rng.uniform(0.1, 0.25)), grain=0.2)
    canvas.rect(-2, edge, w + 2, h + 2, under)
    canvas.shadow(np.array([(-2, edge), (w + 2, edge), (w + 2, h + 2), (-2, h + 2)]))
    bases = np.sort(rng.uniform(table + 0.05 * h, min(edge, h) - 0.02 * h, rng.integers(3, 8)))
    for base in bases:
        thing = [book_stack, bottle, cup, fruit][int(rng.integers(4))]
        thing(canvas, rng.uniform(0, w), base, s * (1.0 + 1.5 * (base - table) / h), -side)


def poster(canvas: Canvas, x: float, y: float, bottom: float) -> None:
    """A printed sheet on the wall: a bold coloured title over lines of small black text."""
    rng, s = canvas.rng, canvas.size
    width, height = s * rng.uniform(0.3, 0.6), min(s * rng.uniform(0.3, 0.6), bottom - y)
    paper, ink = canvas.material((0.12, 0.05, 0.95)), canvas.material((0, 0, 0.05))
    canvas.rect(x, y, x + width, y + height, paper)
    line = s * rng.uniform(0.02, 0.04)
    canvas.text(
        words(rng, 2, caps=True),
        x + 0.05 * width,
        y + 2 * line,
        1.3 * line,
        canvas.material(vivid(rng)),
    )
    for ty in np.arange(y + 3.5 * line, y + height - line, 1.6 * line):
        canvas.text(words(rng, int(rng.integers(2, 6))), x + 0.05 * width, ty, 0.7 * line, ink)


def _base_shadow(canvas: Canvas, x: float, base: float, width: float, away: float) -> None:
    """The soft shadow an object casts on the table, stretched away from the window."""
    canvas.shadow_ellipse((x + away * 0.6 * width, base), (1.1 * width, 0.18 * width))


def book_stack(canvas: Canvas, x: float, base: float, scale: float, away: float) -> None:
    """Books lying in a stack, each cover a colour, titles printed along the spines."""
    rng = canvas.rng
    width = scale * rng.uniform(0.15, 0.3)
    _base_shadow(canvas, x + 0.5 * width, base, width, away)
    y = base
    for _ in range(int(rng.integers(1, 5))):
        thick, shift = scale * rng.uniform(0.02, 0.05), rng.uniform(-0.1, 0.1) * width
        cover = canvas.material(vivid(rng) if rng.random() < 0.6 else (rng.random(), 0.3, 0.3))
        canvas.rect(x + shift, y - thick, x + shift + width, y, cover)
        ink = canvas.material((0, 0, 0.95 if rng.random() < 0.5 else 0.05))
        canvas.text(
            words(rng, 1, caps=True), x + shift + 0.1 * width, y - 0.3 * thick, 0.4 * thick, ink
        )
        y -= thick


def bottle(canvas: Canvas, x: float, base: float, scale: float, away: float) -> None:
    """A glass bottle: dark tinted body and neck, a streak of highlights down the shoulder."""
    rng = canvas.rng
    width, height = scale * rng.uniform(0.05, 0.09), scale * rng.uniform(0.25, 0.4)
    _base_shadow(canvas, x, base, width, away)
    glass = canvas.material(
        (rng.choice((0.1, 0.3, 0.55)), rng.uniform(0.5, 0.9), rng.uniform(0.15, 0.4))
    )
    canvas.rect(x - width / 2, base - 0.65 * height, x + width / 2, base, glass)
    canvas.ellipse((x, base - 0.65 * height), (width / 2, 0.1 * height), 0, glass)
    canvas.rect(x - 0.15 * width, base - height, x + 0.15 * width, base - 0.65 * height, glass)
    label = canvas.material(vivid(rng))
    canvas.rect(x - width / 2, base - 0.45 * height, x + width / 2, base - 0.2 * height, label)
    gx = x - away * 0.25 * width
    for gy in np.linspace(base - 0.6 * height, base - 0.1 * height, 5):
        canvas.glint(gx, gy, 0.05 * width + 0.5, rng.uniform(0.3, 0.8))


def cup(canvas: Canvas, x: float, base: float, scale: float, away: float) -> None:
    """A mug: a cylinder with an elliptic rim, a dark inside and a handle."""
    rng = canvas.rng
    width = scale * rng.uniform(0.07, 0.12)
    height = width * rng.uniform(0.8, 1.3)
    _base_shadow(canvas, x, base, width, away)
    glaze = canvas.material(vivid(rng) if rng.random() < 0.5 else (0, 0, rng.uniform(0.6, 0.95)))
    canvas.ellipse((x + 0.55 * width, base - height / 2), (0.22 * width, 0.28 * height), 0, glaze)
    canvas.ellipse((x + 0.55 * width, base - height / 2), (0.12 * width, 0.18 * height), 0, 0)
    canvas.rect(x - width / 2, base - height, x + width / 2, base, glaze)
    canvas.ellipse((x, base), (width / 2, 0.12 * width), 0, glaze)
    canvas.ellipse((x, base - height), (width / 2, 0.12 * width), 0, glaze)
    inside = canvas.material((0.08, 0.5, 0.1))
    canvas.ellipse((x, base - height), (0.42 * width, 0.08 * width), 0, inside)
    canvas.glint(
        x - away * 0.25 * width, base - 0.6 * height, 0.05 * width + 0.5, rng.uniform(0.4, 0.9)
    )


def fruit(canvas: Canvas, x: float, base: float, scale: float, away: float) -> None:
    """A few round fruits in saturated colour, each with a specular highlight."""
    rng = canvas.rng
    for _ in range(int(rng.integers(1, 4))):
        r = scale * rng.uniform(0.03, 0.06)
        cx = x + rng.uniform(-2, 2) * r
        _base_shadow(canvas, cx, base, r, away)
        skin = canvas.material(
            (rng.choice((0.0, 0.07, 0.14, 0.25)), rng.uniform(0.8, 1), rng.uniform(0.5, 0.9)),
            grain=0.1,
        )
        canvas.ellipse((cx, base - r), (r, 0.95 * r), 0, skin)
        canvas.glint(cx - away * 0.35 * r, base - 1.4 * r, 0.1 * r + 0.5, rng.uniform(0.4, 1.0))


KINDS: dict[str, Callable[[Canvas], None]] = {
    "landscape": landscape,
    "street": street,
    "still_life": still_life,
}
