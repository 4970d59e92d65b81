"""Training throughput (patches/s) per detector and precision, as a fraction of peak.

    python benchmarks/train_throughput.py [--arch bondi2017 ...] [--batch 128] [--device cpu]

For each architecture at its native patch size: forward+backward+SGD step patches/s in
fp32 (contiguous), fp32 channels-last, and bf16 autocast channels-last (fp16 on CUDA too),
with achieved FLOP/s (3x the forward FLOPs) over this device's measured matmul peak of the
same dtype (for bf16/fp16: the faster of that and fp32). Also full-image
identification latency (Bondi: 32 voting patches of a 4000x3000 photo, quality scoring
included) for detectors with a trained checkpoint given by --checkpoint.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from common import matmul_peak, timed

from camtrace.models import architectures, build, load_detector
from camtrace.models.inference import identify
from camtrace.models.summary import summarize
from camtrace.training.memory import keep_freed_memory
from camtrace.training.precision import autocast


def step_fn(arch: str, batch: int, device: torch.device, precision: str, channels_last: bool):
    if device.type == "cpu":
        keep_freed_memory()  # as the training engine does
    torch.manual_seed(0)
    model = build(arch, [f"M{i}" for i in range(10)]).to(device)
    size = model.patch_size
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.rand(batch, 3, size, size, device=device) * 255
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)

    def step() -> None:
        with autocast(precision, device):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, size


def train_gflop(arch: str) -> float:
    """GFLOP of one training step per patch: the forward FLOPs of ``camtrace models`` x 3
    (backward ~ 2x forward; torch's FLOP formulas miscount the backward of grouped
    convolutions, Xception's depthwise). Tuama2016's LRN matrix product is not counted."""
    return 3 * summarize(arch).gflops_per_patch


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--arch", nargs="*", default=architectures())
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--checkpoint", nargs="*", default=[], help="trained detectors for identification latency"
    )
    args = ap.parse_args()
    device = torch.device(args.device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU x{torch.get_num_threads()} threads"
    )
    peak32 = matmul_peak(device)
    peak16 = matmul_peak(device, torch.bfloat16, n=1024 if device.type == "cpu" else 4096)
    print(
        f"device: {name}; measured matmul peak fp32 {peak32 / 1e9:.0f} GFLOP/s, bf16 "
        f"{peak16 / 1e9:.1f} GFLOP/s"
    )
    modes = [("fp32", False), ("fp32", True), ("bf16", True)] + (
        [("fp16", True)] if device.type == "cuda" else []
    )
    print(
        f"{'arch':<12}{'patch':>6}{'GFLOP/patch':>12}  "
        + "".join(f"{p + (' CL' if cl else ''):>20}" for p, cl in modes)
    )
    for arch in args.arch:
        cells = []
        for precision, cl in modes:
            step, size = step_fn(arch, args.batch, device, precision, cl)
            if not cells:
                gflop = train_gflop(arch)
            sec = timed(step, device, warmup=1, reps=args.reps)
            rate = args.batch / sec
            # against the faster of the two peaks: on an AVX2-only CPU the bf16 matmul peak is
            # tiny and a bf16 fraction of it would read as several hundred percent
            peak = peak32 if precision == "fp32" else max(peak16, peak32)
            cells.append(f"{rate:>8.1f}/s ({100 * rate * gflop * 1e9 / peak:>4.0f}%)")
        print(
            f"{arch:<12}{size:>6}{gflop:>12.3f}  " + "".join(f"{c:>20}" for c in cells), flush=True
        )
    for path in args.checkpoint:
        det = load_detector(path, device=device)
        image = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
        t = time.perf_counter()
        reps = 3
        for _ in range(reps):
            identify(det, image)
        print(
            f"identify {det.arch} on a 4000x3000 image: "
            f"{(time.perf_counter() - t) / reps * 1e3:.0f} ms"
        )


if __name__ == "__main__":
    main()
