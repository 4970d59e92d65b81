"""Attack throughput (patches/s) and uint8 success, ours beside torchattacks and ART, in one run.

    python benchmarks/attacks.py [--arch bondi2017] [--jsma-arch densenet40] [--n 32] [--steps 10]
                                 [--eps 4] [--jsma-n 8] [--gamma 0.01] [--repeat 1] [--threads 1]

Same detector (random weights, 10 classes, input and BatchNorm statistics fitted to the
patches), inputs, eps, step size and iterations for every implementation. The gradient
attacks run on --arch (default Bondi2017 at 64x64), JSMA on --jsma-arch (default Guera's
DenseNet-40 at 32x32, where the paper runs it). Success is always counted on the output
rounded to uint8. "ours" is the default (8-bit iterates, per-sample early stop);
"ours, all iterations" runs every iteration like torchattacks and ART do. Two ratios: our
default over the row, and our all-iterations run over the row (the like-for-like one).
Our attacks feed the detector channels-last tensors (faster convolutions and pooling on CPU);
the others get the usual contiguous (N, C, H, W) input. "% peak" is the FLOP/s our rows
achieve (convolution and matmul FLOPs of the call, counted by torch's FlopCounterMode) over
the fp32 matmul peak measured at the start of the run.

JSMA is targeted at each patch's runner-up class (on a random-weight model a random target
is out of reach for every implementation, so all success rates would read 0) on --jsma-n
patches, theta = 255 (saturating), gamma = max fraction of values changed. torchattacks'
JSMA builds the dense n x n pair matrix per iteration, one image at a time (n = 3072 at
32x32; at 64x64, --jsma-arch bondi2017, n = 12288 and 151 M entries: minutes per patch).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import numpy as np
import torch
import torchattacks
from common import flops_of, matmul_peak
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
    run: Runner, det: nn.Module, x: torch.Tensor, target: torch.Tensor | None, repeat: int
) -> tuple[float, float]:
    """Patches/s (best of ``repeat`` calls, after a 1-patch warm-up) and uint8 success rate."""
    run(det, x[:1], None if target is None else target[:1])
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        adv = run(det, x, target).to(x.device)
        best = min(best, time.perf_counter() - t)
    with torch.no_grad():
        clean, pred = det(x.float()).argmax(1), det(adv.float()).argmax(1)
    success = (pred == target) if target is not None else (pred != clean)
    return len(x) / best, success.float().mean().item()


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


def attack_kwargs(name: str, eps: float, alpha: float, steps: int, gamma: float) -> dict:
    """Our parameters for ``name``, matching the torchattacks and ART runners."""
    if name in ("fgsm", "llcm"):
        return {"eps": eps}
    if name == "pgd-l2":
        return {"eps": 16 * eps, "alpha": 4 * alpha, "steps": steps}
    if name == "jsma":
        return {"theta": 255, "gamma": gamma}
    extra = {"kernel_size": 15} if name == "timifgsm" else {}
    return {"eps": eps, "alpha": alpha, "steps": steps, **extra}


def implementations(
    name: str, det: nn.Module, args: argparse.Namespace
) -> list[tuple[str, Runner | None]]:
    """The rows of one attack: ours (default, then all iterations), torchattacks, ART."""
    kwargs = attack_kwargs(name, args.eps, args.alpha, args.steps, args.gamma)
    rows: list[tuple[str, Runner | None]] = [("ours", ours(name, **kwargs))]
    if name not in ("fgsm", "llcm", "jsma"):
        rows.append(("ours, all iterations", ours(name, early_stop=False, **kwargs)))
    reference = (name, det, args.eps, args.alpha, args.steps, args.gamma)
    rows.append(("torchattacks", torchattacks_runner(*reference)))
    rows.append(("ART", art_runner(*reference)))
    return rows


def bench_arch(
    arch: str, attacks: list[str], args: argparse.Namespace, device: torch.device, peak: float
) -> None:
    torch.manual_seed(0)
    det = build(arch, [f"M{i}" for i in range(10)])
    size = det.patch_size
    x = torch.randint(0, 256, (max(args.n, args.jsma_n), 3, size, size), dtype=torch.uint8)
    det = calibrated(det, x).to(device)
    with torch.no_grad():
        runner_up = det(x[: args.jsma_n].float()).topk(2, dim=1).indices[:, 1]
    gradient = [a for a in attacks if a != "jsma"]
    setup = [f"{arch} {size}x{size}", f"{device}, best of {args.repeat}"]
    if gradient:
        setup.insert(
            1,
            f"{args.n} patches, eps {args.eps:g} alpha {args.alpha:g} steps {args.steps} "
            f"(L2: eps {16 * args.eps:g}, alpha {4 * args.alpha:g})",
        )
    if "jsma" in attacks:
        setup.insert(-1, f"JSMA on {args.jsma_n} patches, gamma {args.gamma:g}")
    print("\n" + "; ".join(setup))
    print(
        f"{'attack':9s} {'implementation':21s} {'patches/s':>10s} {'uint8 success':>13s} "
        f"{'ours x':>7s} {'ours all-iter x':>15s} {'% peak':>7s}"
    )
    for name in attacks:
        xs, target = (x[: args.jsma_n], runner_up) if name == "jsma" else (x[: args.n], None)
        rates: dict[str, float] = {}
        for label, run in implementations(name, det, args):
            if run is None:
                continue
            xd, td = xs.to(device), None if target is None else target.to(device)
            rate, success = measure(run, det, xd, td, args.repeat)
            rates[label] = rate
            like = rates.get("ours, all iterations", rates["ours"])
            share = "-"
            if label.startswith("ours"):
                flops = flops_of(functools.partial(run, det, xd, td))
                share = f"{100 * flops / len(xs) * rate / peak:.0f}%"
            print(
                f"{name:9s} {label:21s} {rate:10.2f} {success:13.2f} "
                f"{rates['ours'] / rate:7.1f} {like / rate:15.1f} {share:>7s}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--arch",
        nargs="*",
        default=["bondi2017"],
        choices=architectures(),
        help="architectures of the gradient attacks",
    )
    ap.add_argument("--attacks", nargs="*", default=list(ATTACKS), choices=list(ATTACKS))
    ap.add_argument("--n", type=int, default=32, help="patches per gradient attack")
    ap.add_argument(
        "--jsma-n", type=int, default=8, help="patches for JSMA (torchattacks' is slow)"
    )
    ap.add_argument(
        "--jsma-arch",
        nargs="*",
        default=["densenet40"],
        choices=architectures(),
        help="architectures of JSMA",
    )
    ap.add_argument("--eps", type=float, default=4.0, help="Linf eps, pixel units")
    ap.add_argument("--alpha", type=float, default=1.0, help="step, pixel units")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--gamma", type=float, default=0.01, help="JSMA max fraction of values changed")
    ap.add_argument("--repeat", type=int, default=1, help="timed calls per row; the best counts")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    peak = matmul_peak(device)
    print(
        f"torch {torch.__version__}, {args.threads} threads, fp32 matmul peak "
        f"{peak / 1e9:.0f} GFLOP/s; 'ours x' = our patches/s over the row's, 'ours all-iter x' "
        "= ours without early stop over the row's"
    )
    for arch in dict.fromkeys([*args.arch, *args.jsma_arch]):
        attacks = [
            a
            for a in args.attacks
            if (arch in args.jsma_arch if a == "jsma" else arch in args.arch)
        ]
        if attacks:
            bench_arch(arch, attacks, args, device, peak)


if __name__ == "__main__":
    main()
