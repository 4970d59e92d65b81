"""Load test of the page's server: concurrent identify requests on loopback.

Starts ``camtrace serve`` in its own process on a free loopback port, sends ``--requests``
POST /api/identify at once (a SimCam photo of SimCam-Bench's size, each request its own
upload), checks every answer, and prints the median and 95th-percentile latency.

python benchmarks/serve.py --requests 20 --detector bondi2017
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from camtrace.data.codec import camera_exif, save_image
from camtrace.data.manifest import Record
from camtrace.data.simcam import load_preset, render
from camtrace.hardware import cpu_model_and_isa


def photo(folder: Path, model: str, size: tuple[int, int]) -> Path:
    """Shot 0 of ``model`` (SimCam default preset), written with its camera's tables."""
    camera = next(c for c in load_preset("default").models if c.label == model)
    rgb = render("default", 1, 0, size, Record("x", camera.make, model, "0", "0", "0"))
    path = folder / "photo.jpg"
    save_image(path, rgb, camera.jpeg.jpeg(), exif=camera_exif(camera.make, camera.model))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def started(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if server.poll() is not None:
            raise SystemExit(f"camtrace serve exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("camtrace serve did not answer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--detector", default="bondi2017")
    parser.add_argument("--model", default="Halden_H20", help="SimCam camera of the photo")
    parser.add_argument("--size", type=int, nargs=2, default=(768, 1024), help="height width")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-c", "from camtrace.cli import main; main()", "serve"]
    with tempfile.TemporaryDirectory() as tmp:
        data = photo(Path(tmp), args.model, tuple(args.size)).read_bytes()
        server = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.DEVNULL)
        try:
            started(url, server)
            ask = lambda: identify(url, data, args.detector)  # noqa: E731
            ask()  # the detector is loaded on first use: not timed
            alone = min(ask()[0] for _ in range(3))
            begin = time.perf_counter()
            with ThreadPoolExecutor(args.requests) as pool:
                results = list(pool.map(lambda _: ask(), range(args.requests)))
            wall = time.perf_counter() - begin
        finally:
            server.terminate()
            server.wait(30)
    latencies = np.array([seconds for seconds, _ in results])
    answers = {model for _, model in results}
    cpu, isa = cpu_model_and_isa()
    print(
        f"{args.requests} concurrent identify requests ({args.detector}, a {args.size[1]}x"
        f"{args.size[0]} JPEG, {len(data) / 1024:.0f} KB) on loopback, {cpu} ({isa}): all "
        f"answered, {', '.join(sorted(answers))}; latency median {np.median(latencies):.2f} s, "
        f"95th percentile {np.percentile(latencies, 95):.2f} s; all done in {wall:.2f} s "
        f"(one request alone: {alone:.2f} s)"
    )


def identify(url: str, data: bytes, detector: str) -> tuple[float, str]:
    """One request's latency and answer; any failure stops the benchmark."""
    start = time.perf_counter()
    reply = httpx.post(
        f"{url}/api/identify",
        files={"file": ("photo.jpg", data)},
        data={"detector": detector},
        timeout=300,
    )
    seconds = time.perf_counter() - start
    if reply.status_code != 200:
        raise SystemExit(f"request failed: {reply.status_code} {reply.text}")
    return seconds, reply.json()["answer"]


if __name__ == "__main__":
    main()
