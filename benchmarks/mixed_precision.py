"""Does bf16 autocast training keep the fp32 accuracy? One check per architecture.

    python benchmarks/mixed_precision.py [--arch tuama2016 ...] [--epochs 4] [--shots 16]

Simulates a small SimCam dataset (the ``tiny`` preset: 3 models x 2 devices), cuts the same
patches for every architecture (Bondi's protocol at --patch px; DenseNet-40 at its native 32),
trains each architecture twice from the same seed, in fp32 and in bf16 autocast, and prints
both single-patch accuracies on the scene- and device-disjoint evaluation split. An
architecture passes when bf16 is within --margin points of fp32; ``ModelSpec.mixed_precision``
records the outcome, and ``precision: auto`` keeps fp32 for an architecture that fails.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from camtrace.data.patch_store import build_patch_store
from camtrace.data.patches import get_protocol
from camtrace.data.simcam import simulate
from camtrace.data.splits import split_manifest
from camtrace.models import architectures, model_spec
from camtrace.training.detector import patch_set, train_detector
from camtrace.training.engine import TrainConfig, evaluate_loss


def eval_accuracy(trained, store, config: TrainConfig, precision: str) -> float:
    data = patch_set(store, trained.detector, "eval")
    return evaluate_loss(trained.detector, data, config, precision, torch.device("cpu"))[1]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--arch", nargs="*", default=architectures())
    ap.add_argument("--shots", type=int, default=16)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--margin", type=float, default=2.0, help="allowed loss, accuracy points")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="camtrace-mp-") as tmp:
        root = Path(tmp)
        manifest = simulate("tiny", root / "data", shots=args.shots, seed=0, progress=False)
        split = {"eval_scene_frac": 0.25, "val_scene_frac": 0.25}
        manifest = split_manifest(manifest, split, seed=0)
        manifest.save(root / "manifest.csv")
        stores = {}
        print(f"{'arch':<12}{'patch':>6}{'fp32':>8}{'bf16':>8}{'diff':>7}  pass  time")
        for arch in args.arch:
            size = max(args.patch, model_spec(arch).min_patch_size)
            if model_spec(arch).protocol == "guera":
                size = model_spec(arch).patch_size
            if size not in stores:
                protocol = get_protocol("bondi", size=size)
                stores[size] = build_patch_store(
                    manifest, root / f"patches{size}", protocol=protocol, seed=0, progress=False
                )
            acc, t0 = {}, time.perf_counter()
            for precision in ("fp32", "bf16"):
                config = TrainConfig(
                    epochs=args.epochs,
                    batch_size=32,
                    lr=args.lr,
                    optimizer="adam",
                    weight_decay=0.0,
                    precision=precision,
                    device="cpu",
                )
                out = root / "runs" / f"{arch}-{precision}"
                trained = train_detector(stores[size], arch, out, config, svm=False, progress=False)
                acc[precision] = 100 * eval_accuracy(trained, stores[size], config, precision)
            diff = acc["bf16"] - acc["fp32"]
            verdict = "yes" if diff >= -args.margin else "NO"
            print(
                f"{arch:<12}{size:>6}{acc['fp32']:>7.1f}%{acc['bf16']:>7.1f}%{diff:>+7.1f}  "
                f"{verdict:<4}  {time.perf_counter() - t0:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
