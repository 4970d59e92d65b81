"""Attack speed on a trained detector: camtrace beside torchattacks and ART, like for like.

    python benchmarks/attacks.py [--detector CKPT] [--patches STORE] [--cache DIR]
                                 [--shots 12] [--epochs 8] [--n 128] [--repeat 3] [--threads 2]
                                 [--jsma-n 8] [--gamma 0.01] [--gen-n 32]
                                 [--gen-detectors bondi2017 mislnet xception]

The detector is trained, not random: on random weights nearly every patch succeeds at step 1,
so early stop dominates and the ratios flatter camtrace. Without --detector, Bondi2017 is
trained with camtrace's own API on SimCam's 'default' preset (--shots scenes per device,
Bondi's split and patches, --epochs epochs, ~2-4 minutes on a 2-core CPU) and cached in
--cache; with --detector CKPT, that checkpoint is attacked, on the evaluation patches of
--patches (default: the cached SimCam store, built if needed).

--n correctly classified evaluation patches (a seeded pick), each pushed toward a random
other class (targeted), --threads threads, best of --repeat timed calls. Two settings: PGD eps
4, 10 steps, step 1; and SpoC's PGD eps 8, 40 steps, step 1.25 (Cozzolino et al. 2021).
Rows: camtrace with per-sample early stop (its default), camtrace running every iteration
(the like-for-like row), camtrace every iteration in fp32 when its precision "auto" chose
bf16 (to check that bf16 gradients reach the same uint8 success), torchattacks' PGD and
ART's ProjectedGradientDescent (one random start, as torchattacks and camtrace), and
torchattacks fed camtrace's attack pass at a time (camtrace computes its forward and backward
passes ``camtrace.hardware.attack_pass`` patches at a time, 32 on a CPU, which keeps the
activations in cache; that row separates the passes' share of the ratio from the loop's). Every
success is recomputed here from the returned uint8 images with an fp32 forward. Columns:
seconds, patches/s, uint8 success, the two ratios (camtrace early stop over the row,
camtrace all iterations over the row: on the torchattacks row, the headline numbers), and
the FLOP/s of the call (convolution and matmul FLOPs, counted by torch's formulas) over the
matmul peak, measured at the start, of the arithmetic the row runs in (fp32, or bf16 where
camtrace's precision "auto" chose it).

Generative rows (--gen-n > 0; Chen et al. 2019's MISLGAN, Poursaeed et al. 2018's GAP and
Cozzolino et al. 2021's SpoC, the paper-size generators): on the same trained Bondi2017 (cheap),
on MISLnet and on Xception (costly; trained --mislnet-epochs / --xception-epochs on the same
64x64 patches, cached; generators and detectors are convolutional, so the FLOP ratios at 64x64
are those at the papers' 256x256), each generator is trained here toward one target for
--gen-iterations iterations of --gen-batch patches (training iterations/s printed; SpoC's
iteration is a D step on 3 x batch patches and a G step through D, its embedder and VGG-19, the
embedder random-initialised here: its weights do not change the time; SpoC reads no detector,
so its rows on each detector time the same generator), then --gen-n correctly classified
evaluation patches of other classes are attacked: PGD-40 (SpoC's eps 8, step 1.25; every
iteration, and with early stop) beside one generator pass, each as the full attack call (uint8
verdicts included). Columns: patches/s, uint8 success, mean PSNR, GFLOPs per patch of the call
(counted by torch's formulas, as models/summary.py counts them), and the generator's speed-up
over PGD-40 (all iterations): measured, and ideal (PGD-40's FLOPs over the generator call's).
Success and PSNR of briefly trained generators are low: the rows measure speed, not Chen's tables.

JSMA rows (--jsma-n > 0): Guera's DenseNet-40 at 32x32 with random weights fitted to the
patches (an algorithm comparison: torchattacks' JSMA builds the dense n x n pair matrix per
iteration, one image at a time), targeted at each patch's runner-up class, theta 255,
gamma = max fraction of values changed; its two ratio columns are camtrace's JSMA with
``other="sum"`` (Papernot) and with ``other="max"`` over the row.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchattacks
from common import flops_of, kernels, matmul_peak
from torch import nn

from camtrace.attacks import AttackOptions, make_attack
from camtrace.attacks.generative import (
    Embedder,
    GeneratorConfig,
    SpoCConfig,
    load_generator,
    train_generator,
    train_spoc,
)
from camtrace.attacks.interop import UnitRangeDetector
from camtrace.attacks.precision import resolve_precision
from camtrace.data.patch_store import PatchStore, build_patch_store
from camtrace.data.simcam import simulate
from camtrace.data.splits import bondi_split
from camtrace.hardware import ATTACK_PASS, cpu_model_and_isa, fast_bf16
from camtrace.models import build, load_detector
from camtrace.training.detector import train_detector
from camtrace.training.engine import TrainConfig

try:  # ART is in the dev extra; the benchmark still runs without it
    from art.attacks import evasion as art_evasion
    from art.estimators.classification import PyTorchClassifier
except ImportError:
    art_evasion = None

SETTINGS = {  # name: (eps, alpha, steps), pixel units
    "PGD eps 4, 10 steps, step 1": (4.0, 1.0, 10),
    "PGD eps 8, 40 steps, step 1.25 (SpoC)": (8.0, 1.25, 40),
}

ART_OPTIONS = {"targeted": True, "num_random_init": 1, "batch_size": 128, "verbose": False}
PEAK_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
Runner = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (uint8 x, target) -> uint8


def simcam_store(cache: Path, shots: int) -> PatchStore:
    """SimCam 'default', Bondi's split and patches (the quickstart's data, fewer shots)."""
    manifest = simulate("default", cache / "simcam", shots=shots, progress=False)
    manifest = bondi_split(manifest, seed=0, eval_scene_frac=0.25, val_scene_frac=0.17)
    return build_patch_store(manifest, cache / "patches", "bondi", progress=False)


def trained(cache: Path, store: PatchStore, epochs: int, arch: str = "bondi2017") -> nn.Module:
    """``arch`` trained on ``store`` (softmax head, no SVMs), cached in ``cache``."""
    path = cache / f"{arch}-{epochs}ep" / "detector.safetensors"
    if not path.exists():
        config = TrainConfig(epochs=epochs, lr_step_epochs=max(1, epochs // 2))
        start = time.perf_counter()
        train_detector(store, arch, path.parent, config, svm=False, progress=False)
        print(f"trained {arch} for {epochs} epochs in {time.perf_counter() - start:.0f} s")
    return load_detector(path)


def attacked_patches(
    det: nn.Module, store: PatchStore, n: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` correctly classified evaluation patches (uint8 NCHW) and a random other class each."""
    idx = np.random.default_rng(seed).permutation(store.indices("eval", models=det.classes))
    x = torch.from_numpy(store.patches(idx[: 8 * n])).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(store.labels(idx[: 8 * n], det.classes))
    correct = predict(det, x) == labels
    x, labels = x[correct][:n], labels[correct][:n]
    shift = torch.randint(1, det.num_classes, (len(x),), generator=torch.Generator().manual_seed(0))
    return x, (labels + shift) % det.num_classes


def predict(det: nn.Module, x_u8: torch.Tensor) -> torch.Tensor:
    """fp32 prediction on uint8 images, in batches."""
    with torch.no_grad():
        return torch.cat([det(b.float()).argmax(1) for b in x_u8.split(256)])


def camtrace_runner(det: nn.Module, name: str, **kwargs) -> Runner:
    attack = make_attack(name, **kwargs)
    return lambda x, target: attack(det, x, target)[0]


def torchattacks_pgd(det: nn.Module, eps: float, alpha: float, steps: int) -> Runner:
    def run(x, target):
        attack = torchattacks.PGD(UnitRangeDetector(det), eps / 255, alpha / 255, steps)
        attack.set_mode_targeted_by_label(quiet=True)
        return (attack(x.float() / 255, target) * 255).round().clamp(0, 255).to(torch.uint8)

    return run


def art_pgd(det: nn.Module, eps: float, alpha: float, steps: int) -> Runner | None:
    if art_evasion is None:
        return None
    clf = classifier(det)

    def run(x, target):
        attack = art_evasion.ProjectedGradientDescent(
            clf, eps=eps, eps_step=alpha, max_iter=steps, **ART_OPTIONS
        )
        adv = attack.generate(x.float().numpy(), y=target.numpy())
        return torch.from_numpy(np.asarray(adv)).round().clamp(0, 255).to(torch.uint8)

    return run


def classifier(det: nn.Module) -> PyTorchClassifier:
    size = det.patch_size
    return PyTorchClassifier(
        det,
        loss=nn.CrossEntropyLoss(),
        input_shape=(3, size, size),
        nb_classes=det.num_classes,
        clip_values=(0, 255),
    )


def measure(run: Runner, x: torch.Tensor, target: torch.Tensor, repeat: int):
    """Best seconds of ``repeat`` calls (after a 1-patch warm-up) and the last output."""
    run(x[:1], target[:1])
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        adv = run(x, target)
        best = min(best, time.perf_counter() - start)
    return best, adv


def table(
    title: str,
    rows: list[tuple[str, Runner | None]],
    det: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    args: argparse.Namespace,
    peaks: dict[str, float],
) -> dict[str, torch.Tensor]:
    """Time every row, print it, return each row's uint8 success per patch. A row is
    (label, runner, the arithmetic it runs in); "% peak" is over that arithmetic's peak."""
    print(
        f"\n{title}: {len(x)} patches, {args.threads} threads, best of {args.repeat}; "
        f"{kernels()}; camtrace's attack pass {ATTACK_PASS['cpu']}"
    )
    print(
        f"{'implementation':30s} {'seconds':>8s} {'patches/s':>10s} {'uint8 success':>13s} "
        f"{'early-stop x':>12s} {'all-iter x':>10s} {'% peak':>7s}"
    )
    rates, successes = {}, {}
    for label, run, precision in rows:
        if run is None:
            continue
        seconds, adv = measure(run, x, target, args.repeat)
        rates[label] = len(x) / seconds
        successes[label] = predict(det, adv) == target
        flops = flops_of(functools.partial(run, x, target))
        ours, all_iter = rates[rows[0][0]], rates[rows[1][0]] if len(rates) > 1 else rates[label]
        print(
            f"{label:30s} {seconds:8.2f} {rates[label]:10.1f} "
            f"{successes[label].float().mean().item():13.3f} {ours / rates[label]:12.2f} "
            f"{all_iter / rates[label]:10.2f} {100 * flops / seconds / peaks[precision]:6.0f}%"
        )
    return successes


def chunked(run: Runner, size: int) -> Runner:
    """``run`` on ``size`` patches at a time."""
    return lambda x, target: torch.cat(
        [run(x[i : i + size], target[i : i + size]) for i in range(0, len(x), size)]
    )


def pgd_rows(det: nn.Module, eps: float, alpha: float, steps: int, auto: str):
    """camtrace (early stop, all iterations, all iterations in fp32), torchattacks (on the
    whole batch and on camtrace's attack pass at a time), ART; ``auto`` is what camtrace's
    precision "auto" resolved to."""
    paper = {"eps": eps, "alpha": alpha, "steps": steps, "seed": 0}
    rows = [
        ("camtrace (early stop)", camtrace_runner(det, "pgd", **paper), auto),
        ("camtrace, all iterations", camtrace_runner(det, "pgd", early_stop=False, **paper), auto),
    ]
    if auto == "bf16":
        fp32 = camtrace_runner(det, "pgd", early_stop=False, precision="fp32", **paper)
        rows.append(("camtrace, all iterations, fp32", fp32, "fp32"))
    rows += [
        ("torchattacks", torchattacks_pgd(det, eps, alpha, steps), "fp32"),
        ("ART", art_pgd(det, eps, alpha, steps), "fp32"),
    ]
    size = ATTACK_PASS["cpu"]
    ta = chunked(torchattacks_pgd(det, eps, alpha, steps), size)
    return [*rows, (f"torchattacks, {size} at a time", ta, "fp32")]


def jsma_table(args: argparse.Namespace, peaks: dict[str, float]) -> None:
    """JSMA on a random-weight DenseNet-40 fitted to random patches (see the docstring)."""
    torch.manual_seed(0)
    det = build("densenet40", [f"M{i}" for i in range(10)])
    x = torch.randint(0, 256, (args.jsma_n, 3, 32, 32), dtype=torch.uint8)
    det.fit_preprocessing(x.permute(0, 2, 3, 1))
    for m in det.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average: one pass sets the batch statistics
    det.train()
    with torch.no_grad():
        runner_up = det(x.float()).topk(2, dim=1).indices[:, 1]
    det.eval()

    def torchattacks_jsma(x, target):
        attack = torchattacks.JSMA(UnitRangeDetector(det), theta=1.0, gamma=args.gamma)
        attack.set_mode_targeted_by_label(quiet=True)
        return (attack(x.float() / 255, target) * 255).round().clamp(0, 255).to(torch.uint8)

    def art_jsma(x, target):
        attack = art_evasion.SaliencyMapMethod(
            classifier(det), theta=255, gamma=args.gamma, batch_size=128, verbose=False
        )
        adv = attack.generate(x.float().numpy(), y=target.numpy())
        return torch.from_numpy(np.asarray(adv)).round().clamp(0, 255).to(torch.uint8)

    auto = resolve_precision(AttackOptions(), det, x[:8].float())
    rows = [
        (
            f"camtrace JSMA {other}",
            camtrace_runner(det, "jsma", gamma=args.gamma, other=other),
            auto,
        )
        for other in ("sum", "max")
    ]
    rows += [
        ("torchattacks", torchattacks_jsma, "fp32"),
        ("ART", art_jsma if art_evasion else None, "fp32"),
    ]
    title = f"JSMA, DenseNet-40 32x32 (random weights), gamma {args.gamma:g}, runner-up target"
    table(title, rows, det, x, runner_up, args, peaks)


GENERATIVE = ("mislgan", "gap", "spoc")


def train_for_speed(
    method: str,
    det: nn.Module,
    store: PatchStore,
    train_x: np.ndarray,
    target: int,
    args: argparse.Namespace,
    out: Path,
) -> Path:
    """``method``'s generator trained toward ``target`` for --gen-iterations iterations; SpoC
    on the target camera's patches (R_M) and ``train_x`` (S) with a random embedder."""
    every = {"val_every": args.gen_iterations, "save_every": args.gen_iterations}
    if method != "spoc":
        config = GeneratorConfig(batch_size=args.gen_batch, iterations=args.gen_iterations, **every)
        return train_generator(method, det, train_x, train_x[:8], target, config, out, False)
    name = det.classes[target]
    real = store.patches(store.indices("train", models=[name])[: 8 * args.gen_batch])
    config = SpoCConfig(batch_size=args.gen_batch, iterations=args.gen_iterations, **every)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        embedder = Embedder()
    return train_spoc(real, train_x, train_x[:8], embedder, name, config, out, resume=False)


def psnr(adv: torch.Tensor, x: torch.Tensor) -> float:
    """Mean per-patch PSNR (dB) of uint8 batches; an unchanged patch counts as one grey level
    changed in one value."""
    mse = (adv.float() - x.float()).square().flatten(1).mean(1).clamp_min(1 / x[0].numel())
    return (10 * torch.log10(255**2 / mse)).mean().item()


def generative_table(
    det: nn.Module, store: PatchStore, args: argparse.Namespace, cache: Path
) -> None:
    """PGD-40 beside one pass of each briefly trained generator, on ``det``
    (see the docstring)."""
    target = det.num_classes - 1
    idx = np.random.default_rng(1).permutation(store.indices("train", models=det.classes))
    train_x = store.patches(idx[: 8 * args.gen_batch])
    train_x = train_x[store.labels(idx[: 8 * args.gen_batch], det.classes) != target]
    idx = np.random.default_rng(0).permutation(store.indices("eval", models=det.classes))
    x = torch.from_numpy(store.patches(idx[: 8 * args.gen_n])).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(store.labels(idx[: 8 * args.gen_n], det.classes))
    x = x[(predict(det, x) == labels) & (labels != target)][: args.gen_n]
    goal = torch.full((len(x),), target)
    pgd = {"eps": 8.0, "alpha": 1.25, "steps": 40, "seed": 0}
    rows = [
        ("PGD-40, all iterations", make_attack("pgd", early_stop=False, **pgd)),
        ("PGD-40, early stop", make_attack("pgd", **pgd)),
    ]
    for method in GENERATIVE:
        out = cache / "generators" / f"{det.arch}-{method}-{args.gen_iterations}it"
        start = time.perf_counter()
        path = train_for_speed(method, det, store, train_x, target, args, out)
        seconds = time.perf_counter() - start
        print(
            f"{method} against {det.arch}: {args.gen_iterations} training iterations of "
            f"{args.gen_batch} patches, {args.gen_iterations / seconds:.2f} it/s"
        )
        rows.append((f"{method}, one pass", make_attack(method, generator=load_generator(path))))
    print(
        f"\n{det.arch} ({det.patch_size}x{det.patch_size}): {len(x)} patches toward "
        f"{det.classes[target]}, {args.threads} threads, best of {args.repeat}; {kernels()}"
    )
    print(
        f"{'attack':24s} {'patches/s':>10s} {'uint8 success':>13s} {'PSNR dB':>8s} "
        f"{'GFLOPs/patch':>12s} {'speed-up':>9s} {'ideal':>7s}"
    )
    base = {}
    for label, attack in rows:
        seconds, adv = measure(lambda xs, ts, a=attack: a(det, xs, ts)[0], x, goal, args.repeat)
        flops = flops_of(functools.partial(attack, det, x, goal)) / len(x)
        rate = len(x) / seconds
        base = base or {"rate": rate, "flops": flops}
        success = (predict(det, adv) == goal).float().mean().item()
        print(
            f"{label:24s} {rate:10.1f} {success:13.3f} {psnr(adv, x):8.1f} {flops / 1e9:12.3f} "
            f"{rate / base['rate']:9.2f} {base['flops'] / flops:7.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--detector", type=Path, help="checkpoint to attack (default: train one)")
    ap.add_argument("--patches", type=Path, help="patch store of --detector's data")
    ap.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "camtrace" / "benchmark-attacks"
    )
    ap.add_argument("--shots", type=int, default=12, help="SimCam scenes per device")
    ap.add_argument("--epochs", type=int, default=8, help="Bondi2017 training epochs")
    ap.add_argument("--n", type=int, default=128, help="correctly classified patches attacked")
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per row; the best counts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--jsma-n", type=int, default=8, help="JSMA patches (0: no JSMA rows)")
    ap.add_argument("--gamma", type=float, default=0.01, help="JSMA max fraction of values changed")
    ap.add_argument("--gen-n", type=int, default=32, help="generative rows' patches (0: none)")
    ap.add_argument("--gen-iterations", type=int, default=10, help="generator training iterations")
    ap.add_argument("--gen-batch", type=int, default=8, help="generator training batch")
    ap.add_argument("--mislnet-epochs", type=int, default=1, help="MISLnet training epochs")
    ap.add_argument("--xception-epochs", type=int, default=1, help="Xception training epochs")
    ap.add_argument(
        "--gen-detectors",
        nargs="*",
        default=["bondi2017", "mislnet", "xception"],
        choices=["bondi2017", "mislnet", "xception"],
        help="detectors of the generative rows",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    # bf16's peak only where bf16 is fast: emulated (AVX2) it takes minutes and no row uses it
    used = PEAK_DTYPES if fast_bf16(cpu) else {"fp32": torch.float32}
    peaks = {p: matmul_peak(cpu, dtype) for p, dtype in used.items()}
    print(
        f"torch {torch.__version__}, {args.threads} threads, {' '.join(cpu_model_and_isa())}, "
        f"{kernels()}; matmul peak "
        + ", ".join(f"{p} {peak / 1e9:.0f} GFLOP/s" for p, peak in peaks.items())
    )
    store = PatchStore.open(args.patches) if args.patches else simcam_store(args.cache, args.shots)
    det = load_detector(args.detector) if args.detector else trained(args.cache, store, args.epochs)
    det.eval()
    x, target = attacked_patches(det, store, args.n)
    x0 = x[:8].float().contiguous(memory_format=torch.channels_last)
    auto = resolve_precision(AttackOptions(), det, x0)
    print(
        f"{det.arch}, {len(x)} correctly classified eval patches; camtrace precision 'auto' "
        f"-> {auto}"
    )
    for title in args.settings:
        eps, alpha, steps = SETTINGS[title]
        success = table(title, pgd_rows(det, eps, alpha, steps, auto), det, x, target, args, peaks)
        if auto == "bf16":
            differ = (
                success["camtrace, all iterations"] != success["camtrace, all iterations, fp32"]
            )
            print(
                f"bf16 vs fp32 gradient passes: uint8 success differs on {int(differ.sum())} "
                f"of {len(x)} patches"
            )
    if args.jsma_n > 0:
        jsma_table(args, peaks)
    if args.gen_n > 0:
        costly = (("mislnet", args.mislnet_epochs), ("xception", args.xception_epochs))
        for arch, epochs in (("bondi2017", None), *costly):
            if arch not in args.gen_detectors:
                continue
            detector = det if epochs is None else trained(args.cache, store, epochs, arch)
            generative_table(detector.eval(), store, args, args.cache)


if __name__ == "__main__":
    main()
