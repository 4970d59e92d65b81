"""Which libraries make SimCam-Bench's pixels depend on the CPU? One rendering per kernel choice.

    python benchmarks/render_isa.py [--images 3]

Renders the first ``--images`` evaluation images of SimCam-Bench in memory
(``camtrace.data.simcam.render``), once with every library at its own kernel choice and once
per library held to other kernels (an environment variable, or OpenCV's optimised paths off),
each in a fresh process, and prints per setting how many pixels differ from the default
rendering and by how many grey levels at most. A library whose setting moves pixels picks its
kernels by instruction set, so an AVX2 machine and an AVX512 one render the bench differently
(docs/zoo.md: SimCam-Bench v1).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from camtrace.hardware import cpu_model_and_isa

SETTINGS = {  # name -> (environment, OpenCV's optimised paths on)
    "default": ({}, True),
    "OpenCV optimised paths off": ({}, False),
    "OpenBLAS held to Prescott (SSE3)": ({"OPENBLAS_CORETYPE": "Prescott"}, True),
    "OpenBLAS held to Haswell (AVX2)": ({"OPENBLAS_CORETYPE": "Haswell"}, True),
    "PyTorch held to its default kernels": ({"ATEN_CPU_CAPABILITY": "default"}, True),
    "NumPy held to its baseline": (
        {
            "NPY_DISABLE_CPU_FEATURES": "AVX2 FMA3 AVX512F AVX512CD AVX512_SKX AVX512_CLX "
            "AVX512_CNL AVX512_ICL AVX512_SPR"
        },
        True,
    ),
}

_RENDER = """
import sys
import cv2
import numpy as np
cv2.setUseOptimized(sys.argv[2] == "1")
from camtrace.data.bench import bench_manifest, get_bench
from camtrace.data.simcam.pipeline import render
bench = get_bench()
records = [r for r in bench_manifest() if r.split == "eval"][: int(sys.argv[3])]
np.save(sys.argv[1], np.stack([render(bench.preset, bench.shots, bench.seed, bench.size, r)
                               for r in records]))
"""


def rendering(out: Path, env: dict[str, str], optimised: bool, images: int) -> np.ndarray:
    """The images rendered in a fresh process with ``env`` added to the environment."""
    subprocess.run(
        [sys.executable, "-c", _RENDER, str(out), "1" if optimised else "0", str(images)],
        env={**os.environ, **env},
        check=True,
    )
    return np.load(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3)
    args = parser.parse_args()
    name, isa = cpu_model_and_isa()
    print(f"processor: {name}, {isa}; {args.images} SimCam-Bench v1 eval images rendered in memory")
    print(f"{'setting':40s} {'pixels differing':>18s} {'max |diff|':>11s}")
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        for i, (setting, (env, optimised)) in enumerate(SETTINGS.items()):
            images = rendering(Path(tmp) / f"{i}.npy", env, optimised, args.images).astype(int)
            base = images if base is None else base
            diff = np.abs(images - base)
            print(f"{setting:40s} {int((diff > 0).sum()):>10d} / {diff.size} {diff.max():>11d}")


if __name__ == "__main__":
    main()
