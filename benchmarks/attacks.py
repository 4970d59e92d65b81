"""Attack throughput (patches/s) and uint8 success, ours beside torchattacks and ART.

    python benchmarks/attacks.py [--n 32] [--steps 10] [--eps 4] [--threads 1] [--device cpu]

Same detector (random weights, 10 classes), inputs, eps, step size and iterations for every
implementation: Bondi2017 at 64x64, and DenseNet-40 at 32x32 when the registry lists it.
Success is always counted on the output rounded to uint8. "ours" is the default (8-bit
iterates, per-sample early stop); "ours, no early stop" runs every iteration like the others.
JSMA is targeted (a random class other than the prediction) on --jsma-n patches.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torchattacks
from torch import nn

from camtrace.attacks import ATTACKS, make_attack
from camtrace.models import architectures, build

try:  # ART is in the dev extra; the benchmark still runs without it
    from art.attacks import evasion as art_evasion
    from art.estimators.classification import PyTorchClassifier
except ImportError:
    art_evasion = None


class Unit01(nn.Module):
    """The detector seen from torchattacks' [0, 1] world."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector
        self.train(detector.training)  # torchattacks restores the wrapper's mode onto the detector

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.detector(x01 * 255)


Runner = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def ours(name: str, early_stop: bool = True, **kwargs) -> Runner:
    stop = {} if name in ("fgsm", "llcm", "jsma") else {"early_stop": early_stop}
    attack = make_attack(name, **stop, **kwargs)

    def run(det, x, target):
        return attack(det, x, target)[0]

    return run


def torchattacks_runner(
    name: str, det: nn.Module, eps: float, alpha: float, steps: int, gamma: float
) -> Runner:
    model = Unit01(det)
    e, a = eps / 255, alpha / 255
    make = {
        "fgsm": lambda: torchattacks.FGSM(model, e),
        "llcm": lambda: torchattacks.FGSM(model, e),
        "bim": lambda: torchattacks.BIM(model, e, a, steps),
        "pgd": lambda: torchattacks.PGD(model, e, a, steps),
        "pgd-l2": lambda: torchattacks.PGDL2(model, 16 * e, 4 * a, steps),
        "mifgsm": lambda: torchattacks.MIFGSM(model, e, a, steps, decay=1.0),
        "timifgsm": lambda: torchattacks.TIFGSM(model, e, a, steps, decay=1.0, diversity_prob=0.0),
        "jsma": lambda: torchattacks.JSMA(model, theta=1.0, gamma=gamma),
    }[name]

    def run(det_, x, target):
        attack = make()
        with torch.no_grad():
            labels = det(x.float()).argmax(1)
        if name == "llcm":
            attack.set_mode_targeted_least_likely(quiet=True)
        if target is not None:
            attack.set_mode_targeted_by_label(quiet=True)
            labels = target
        return (attack(x.float() / 255, labels) * 255).round().clamp(0, 255).to(torch.uint8)

    return run


def art_runner(
    name: str, det: nn.Module, eps: float, alpha: float, steps: int, gamma: float
) -> Runner | None:
    if art_evasion is None:
        return None
    size = det.patch_size
    clf = PyTorchClassifier(
        det,
        loss=nn.CrossEntropyLoss(),
        input_shape=(3, size, size),
        nb_classes=det.num_classes,
        clip_values=(0, 255),
    )
    iterative = {"eps": eps, "eps_step": alpha, "max_iter": steps, "verbose": False}
    make = {
        "fgsm": lambda: art_evasion.FastGradientMethod(clf, eps=eps),
        "bim": lambda: art_evasion.BasicIterativeMethod(clf, **iterative),
        "pgd": lambda: art_evasion.ProjectedGradientDescent(clf, **iterative),
        "pgd-l2": lambda: art_evasion.ProjectedGradientDescent(
            clf, norm=2, eps=16 * eps, eps_step=4 * alpha, max_iter=steps, verbose=False
        ),
        "mifgsm": lambda: art_evasion.MomentumIterativeMethod(clf, decay=1.0, **iterative),
        "jsma": lambda: art_evasion.SaliencyMapMethod(
            clf, theta=255, gamma=gamma, batch_size=128, verbose=False
        ),
    }.get(name)
    if make is None:
        return None

    def run(det_, x, target):
        y = None if target is None else target.cpu().numpy()  # only JSMA is run targeted
        adv = make().generate(x.float().cpu().numpy(), y=y)
        return torch.from_numpy(np.asarray(adv)).round().clamp(0, 255).to(torch.uint8)

    return run


def measure(
    run: Runner, det: nn.Module, x: torch.Tensor, target: torch.Tensor | None
) -> tuple[float, float]:
    """Patches/s of one call (after a 2-patch warm-up) and uint8 success rate."""
    run(det, x[:2], None if target is None else target[:2])
    t = time.perf_counter()
    adv = run(det, x, target).to(x.device)
    seconds = time.perf_counter() - t
    with torch.no_grad():
        clean, pred = det(x.float()).argmax(1), det(adv.float()).argmax(1)
    success = (pred == target) if target is not None else (pred != clean)
    return len(x) / seconds, success.float().mean().item()


def calibrated(det: nn.Module, x: torch.Tensor) -> nn.Module:
    """Random weights, but input and BatchNorm statistics fitted to the patches: an untrained
    DenseNet otherwise saturates its softmax (logits ~1e3) and has no gradient at all."""
    det.fit_preprocessing(x.permute(0, 2, 3, 1))
    for m in det.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average: one pass sets the batch statistics
    det.train()
    with torch.no_grad():
        det(x.float())
    return det.eval()


def bench_arch(arch: str, args: argparse.Namespace, device: torch.device) -> None:
    torch.manual_seed(0)
    det = build(arch, [f"M{i}" for i in range(10)])
    size = det.patch_size
    x = torch.randint(0, 256, (args.n, 3, size, size), dtype=torch.uint8)
    det = calibrated(det, x).to(device)
    with torch.no_grad():
        pred = det(x.float()).argmax(1)
    g = torch.Generator().manual_seed(1)
    jsma_x = x[: args.jsma_n]
    jsma_target = (pred[: args.jsma_n] + 1 + torch.randint(0, 9, (args.jsma_n,), generator=g)) % 10
    eps, alpha, steps = args.eps, args.alpha, args.steps
    print(
        f"\n{arch} {size}x{size}, {args.n} patches ({args.jsma_n} for JSMA), eps {eps:g} alpha {alpha:g} "
        f"steps {steps} (L2: eps {16 * eps:g}, alpha {4 * alpha:g}), JSMA gamma {args.gamma:g}, {device}"
    )
    print(
        f"{'attack':10s} {'implementation':22s} {'patches/s':>10s} {'success':>8s} {'ours x':>7s}"
    )
    for name in args.attacks:
        kwargs = (
            {"eps": eps}
            if name in ("fgsm", "llcm")
            else {"eps": eps, "alpha": alpha, "steps": steps}
        )
        if name == "pgd-l2":
            kwargs = {"eps": 16 * eps, "alpha": 4 * alpha, "steps": steps}
        if name == "timifgsm":
            kwargs["kernel_size"] = 15
        if name == "jsma":
            kwargs = {"theta": 255, "gamma": args.gamma}
        xs, target = (jsma_x, jsma_target) if name == "jsma" else (x, None)
        rows = [("ours", ours(name, **kwargs))]
        if name not in ("fgsm", "llcm", "jsma"):
            rows.append(("ours, no early stop", ours(name, early_stop=False, **kwargs)))
        rows.append(("torchattacks", torchattacks_runner(name, det, eps, alpha, steps, args.gamma)))
        rows.append(("ART", art_runner(name, det, eps, alpha, steps, args.gamma)))
        base = None
        for label, run in rows:
            if run is None:
                continue
            rate, success = measure(
                run, det, xs.to(device), None if target is None else target.to(device)
            )
            base = base or rate
            print(f"{name:10s} {label:22s} {rate:10.1f} {success:8.2f} {base / rate:7.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--arch",
        nargs="*",
        default=[a for a in ("bondi2017", "densenet40") if a in architectures()],
    )
    ap.add_argument("--attacks", nargs="*", default=list(ATTACKS), choices=list(ATTACKS))
    ap.add_argument("--n", type=int, default=32, help="patches per gradient attack")
    ap.add_argument(
        "--jsma-n", type=int, default=2, help="patches for JSMA (torchattacks' is slow)"
    )
    ap.add_argument("--eps", type=float, default=4.0, help="Linf eps, pixel units")
    ap.add_argument("--alpha", type=float, default=1.0, help="step, pixel units")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument(
        "--gamma", type=float, default=0.005, help="JSMA max fraction of values changed"
    )
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads; 'ours x' = our patches/s over this row's"
    )
    for arch in args.arch:
        bench_arch(arch, args, torch.device(args.device))


if __name__ == "__main__":
    main()
