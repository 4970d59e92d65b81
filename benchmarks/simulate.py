"""Time SimCam: images per second for a preset (default: 10 models x 3 devices x 24 shots).

python benchmarks/simulate.py --shots 24 --workers 2 --size 384x512
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from camtrace.data.simcam import load_preset, simulate
from camtrace.data.simcam.natural import KINDS, natural_scene
from camtrace.data.simcam.scenes import dead_leaves


def parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def time_dead_leaves(preset: str, repeats: int = 5) -> float:
    """Median seconds to render one 512x512 dead-leaves scene."""
    spec = load_preset(preset).scenes.dead_leaves
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        dead_leaves(np.random.default_rng(i), (512, 512), spec)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_natural(kind: str, shape: tuple[int, int], repeats: int = 5) -> float:
    """Median seconds to render one natural scene of ``kind`` (shape: frame plus margins)."""
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        natural_scene(np.random.default_rng(i), shape, kind)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--shots", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=parse_size, default=(384, 512), help="HxW, e.g. 384x512")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="simcam-bench-") as out:
        start = time.perf_counter()
        manifest = simulate(
            args.preset,
            Path(out),
            shots=args.shots,
            seed=args.seed,
            size=args.size,
            workers=args.workers,
            progress=False,
        )
        total = time.perf_counter() - start
    h, w = args.size
    print(f"preset {args.preset}: {len(manifest)} images of {h}x{w}, workers={args.workers}")
    print(f"total {total:.1f} s, {len(manifest) / total:.1f} images/s")
    print(f"dead leaves 512x512: {1000 * time_dead_leaves(args.preset):.0f} ms per scene")
    margin = load_preset(args.preset).scenes.margin
    shape = (h + 2 * margin, w + 2 * margin)
    for kind in KINDS:
        ms = 1000 * time_natural(kind, shape)
        print(f"natural {kind} {shape[0]}x{shape[1]}: {ms:.0f} ms per scene")


if __name__ == "__main__":
    main()
