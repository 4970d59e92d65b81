"""Training one generator per target (Chen et al. 2019 Sec. 4.1; SpoC's baselines).

``train_generator(method, detectors, train, val, target, config, out_dir)`` fits a generator
against one frozen detector or an ensemble (the mean of their cross-entropies toward the
target) and writes its checkpoint. Each iteration draws ``batch_size`` training patches (Chen:
30), updates the discriminator on those 30 originals and the 30 patches generated from them
(MISLGAN only), then the generator on L_G. Every ``val_every`` iterations the generator
attacks the validation patches on the 8-bit grid; training stops once the SAR of every
detector reaches ``stop_sar`` and the mean PSNR ``stop_psnr`` (Chen: "when loss on validation
patches reached an acceptable level"; SpoC stops Adv-Cam-Id at a PSNR), or at
``iterations``.

Resumable with the same result: the state (weights, BatchNorm statistics, Adam moments and
steps, iteration, logs) is saved every ``save_every`` iterations, atomically; the only
randomness is the initial weights (seeded once) and each iteration's batch, drawn from a
generator seeded by (seed, iteration), so a resumed run draws exactly the batches the
uninterrupted one would have. Deterministic on one machine and thread count (CPU kernels).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from camtrace._version import __version__
from camtrace.attacks.base import require_gradient
from camtrace.attacks.generative.checkpoint import (
    array_digest,
    load_state,
    read_generator_card,
    save_generator,
    save_state,
    weights_digest,
)
from camtrace.attacks.generative.methods import Method, get_method
from camtrace.attacks.generative.mislgan import (
    Discriminator,
    adversarial_loss,
    discriminator_loss,
    perceptual_loss,
)
from camtrace.errors import CamtraceError
from camtrace.hardware import ATTACK_PRECISIONS, autocast, environment, resolve_precision
from camtrace.io import write_json
from camtrace.models.inference import eval_mode
from camtrace.schema import Invalid, Section, option

SSIM_WINDOW = 11  # Wang et al. 2004's Gaussian window (sigma 1.5)

GENERATOR_FILE = "generator.safetensors"
STATE_FILE = "train_state.safetensors"
LOG_FILE = "log.json"


def precision_option(networks: str, in_fp32: str) -> Any:
    """A training's ``precision`` option: ``networks`` in bf16 where fast, ``in_fp32`` not."""
    return option(
        "auto",
        f"the arithmetic of {networks} in training (auto: bf16 where this CPU or GPU is fast "
        f"in it, else fp32); {in_fp32} in fp32",
        choices=lambda: ATTACK_PRECISIONS,
    )


class GeneratorConfig(Section):
    """Training settings of a generator (Chen et al. 2019 Sec. 4.1); the ``generators:``
    section of a config extends it. Resuming needs the same settings."""

    batch_size: int = option(30, "patches per iteration (Chen: 30; D sees 2x)", minimum=1)
    iterations: int = option(1000, "training iterations at most", minimum=1)
    val_every: int = option(50, "iterations between validations", minimum=1)
    save_every: int = option(50, "iterations between saved training states", minimum=1)
    stop_sar: float = option(
        0.95, "stop once every detector's validation SAR reaches it", minimum=0, maximum=1
    )
    stop_psnr: float | None = option(
        None,
        "... and the validation PSNR this (default: 40 dB for MISLGAN and Adv-Cam-Id, Chen "
        "reporting more than 42.7 dB; none for GAP, whose budget bounds it)",
        minimum=0,
    )
    max_hours: float | None = option(
        None,
        "stop after this much CPU time of training (all threads), summed over sittings; a "
        "machine shared with other jobs then gets the same work (default: none)",
        minimum=0,
    )
    alpha: float = option(1.0, "weight of the L1 term in grey levels (Chen Eq. 2)", minimum=0)
    beta: float = option(1.0, "weight of the classification term (Chen Eq. 2)", minimum=0)
    gamma: float = option(
        1.0, "weight of the adversarial term (MISLGAN only; Adv-Cam-Id and GAP: 0)", minimum=0
    )
    lr: float | None = option(None, "Adam learning rate (default: the method's)", minimum=0)
    eps: float | None = option(None, "GAP's Linf budget, 0-255 (default 8)", minimum=0)
    warm_start: int = option(
        0,
        "first iterations on the L1 term alone (not Chen's: an ablated option; MISLGAN and "
        "Adv-Cam-Id)",
        minimum=0,
    )
    warm_lr: float | None = option(
        None, "Adam learning rate of the warm start (default: lr)", minimum=0
    )
    precision: str = precision_option("the generator", "detectors, discriminator and validation")
    channels_last: bool = option(True, "the generator in channels-last memory format")

    def check(self) -> None:
        if self.warm_start >= self.iterations:
            raise Invalid("warm_start", f"must be below iterations ({self.iterations})")

    def psnr_threshold(self, method: Method) -> float:
        return method.stop_psnr if self.stop_psnr is None else float(self.stop_psnr)

    def generator_options(self) -> dict[str, Any]:
        """The generator's constructor keywords these settings fix (GAP's ``eps``)."""
        return {} if self.eps is None else {"eps": self.eps}


def train_generator(
    method: str,
    detectors: nn.Module | Sequence[nn.Module],
    train_uint8: np.ndarray | torch.Tensor,
    val_uint8: np.ndarray | torch.Tensor,
    target: int | str,
    config: GeneratorConfig | None = None,
    out_dir: str | Path = "generator",
    resume: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Train one ``method`` generator toward ``target`` (a class name or index of the
    detectors, which must share their classes) on uint8 patches (N, H, W, 3) and return the
    checkpoint path. ``resume``: continue the state in ``out_dir`` (or return a finished
    checkpoint there); False starts afresh. ``seed`` seeds the initial weights and each
    iteration's batch; ``progress``: a Rich progress bar."""
    m, config = get_method(method), config or GeneratorConfig()
    if not m.detector:
        raise CamtraceError(
            f"{m.name} trains on target-camera images alone, not against detectors; "
            "use camtrace.attacks.generative.train_spoc"
        )
    classifiers = list(detectors) if isinstance(detectors, Sequence) else [detectors]
    for c in classifiers:  # the classification loss needs the detector's gradient
        require_gradient(c, f"{m.name} training")
    classes = _shared_classes(classifiers)
    target_index = _target_index(target, classes)
    train, val = as_patches(train_uint8, "train"), as_patches(val_uint8, "val")
    out = Path(out_dir)
    card = {
        "method": m.name,
        "paper": m.paper,
        "target": classes[target_index],
        "target_index": target_index,
        "classes": classes,
        "patch_size": int(train.shape[-1]),
        "detectors": [
            {"arch": getattr(c, "arch", type(c).__name__), "digest": weights_digest(c)}
            for c in classifiers
        ],
        "data": {
            "train": array_digest(train),
            "val": array_digest(val),
            "train_patches": len(train),
            "val_patches": len(val),
        },
        "config": {**config.values_of(GeneratorConfig), "seed": seed},
    }
    if resume and (out / GENERATOR_FILE).is_file():
        same_run(read_generator_card(out / GENERATOR_FILE), card, out)
        return out / GENERATOR_FILE
    run = _Run(m, config, classifiers, target_index, train, val, card, seed)
    if resume and (out / STATE_FILE).is_file():
        run.restore(out / STATE_FILE)
    return run.fit(out, config.val_every, config.save_every, progress)


class GeneratorLoop:
    """The loop every generator's training shares: Adam per network, the iterations with
    validation, the stop test and atomic saves, resume, the final checkpoint and its card.
    A method supplies ``batch`` (this iteration's inputs, seeded by (seed, iteration)),
    ``step``, ``validate`` and, if it stops early, ``good_enough``."""

    def __init__(
        self, card: dict[str, Any], total: int, label: str, max_hours: float | None = None
    ) -> None:
        self.card, self.total, self.label = card, total, label
        self.max_seconds = None if max_hours is None else 3600 * max_hours
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.iteration, self.losses, self.validation, self.done = 0, [], [], False
        self.seconds = 0.0  # training time, summed over sittings
        self.cpu_seconds = 0.0  # the process's CPU time in training, what max_hours bounds
        self.precision = "fp32"  # the generator's arithmetic in training (its card says it)

    def adam(self, lr: float, betas: tuple[float, float]) -> None:
        """One Adam per network of ``modules``."""
        self.optimizers = {
            name: torch.optim.Adam(module.parameters(), lr=lr, betas=betas)
            for name, module in self.modules.items()
        }

    @property
    def generator(self) -> nn.Module:
        return self.modules["generator"]

    def update(self, name: str, loss: torch.Tensor) -> float:
        """One optimiser step of network ``name`` on ``loss``; the loss's value."""
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    def restore(self, path: Path) -> None:
        info = load_state(path, self.modules, self.optimizers)
        same_run(info["card"], self.card, path.parent, budget=False)
        self.iteration, self.losses = info["iteration"], info["losses"]
        self.validation, self.done = info["validation"], info["done"]
        self.seconds = info.get("seconds", 0.0)
        self.cpu_seconds = info.get("cpu_seconds", self.seconds)  # older states: wall time

    def batch(self) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def step(self, *batch: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    def validate(self) -> dict[str, Any]:
        raise NotImplementedError

    def good_enough(self, v: dict[str, Any]) -> bool:
        return False

    def frozen(self) -> contextlib.AbstractContextManager[None]:
        """Held around the loop (the frozen detectors of a detector-trained method)."""
        return contextlib.nullcontext()

    def final_card(self) -> dict[str, Any]:
        """What the checkpoint's card adds to the run's card."""
        return {}

    def fit(self, out: Path, val_every: int, save_every: int, progress: bool) -> Path:
        with self.frozen(), Progress(disable=not progress) as bar:
            task = bar.add_task(self.label, total=self.total, completed=self.iteration)
            started, before = time.perf_counter(), self.seconds
            cpu_started, cpu_before = time.process_time(), self.cpu_seconds
            while not self.done and self.iteration < self.total:
                self.losses.append(self.step(*self.batch()))
                self.iteration += 1
                self.seconds = before + time.perf_counter() - started
                self.cpu_seconds = cpu_before + time.process_time() - cpu_started
                last = self.iteration == self.total or self.out_of_time()
                if self.iteration % val_every == 0 or last:
                    self.validation.append(
                        {
                            **self.validate(),
                            "seconds": round(self.seconds),
                            "cpu_seconds": round(self.cpu_seconds),
                        }
                    )
                    self.done = last or self.good_enough(self.validation[-1])
                if self.iteration % save_every == 0 or self.done:
                    self.save(out)
                bar.update(task, completed=self.iteration)
        self.save(out)
        card = {
            **self.card,
            "hparams": self.generator.hparams,
            "iterations": self.iteration,
            "training_seconds": round(self.seconds),
            "training_cpu_seconds": round(self.cpu_seconds),
            **self.final_card(),
            "validation": self.validation[-1] if self.validation else None,
            "environment": environment(torch.device("cpu"), self.precision),
            "camtrace_version": __version__,
            "input": "float RGB pixels in [0, 255], (N, 3, H, W); gives the same",
        }
        return save_generator(self.generator, out / GENERATOR_FILE, card)

    def out_of_time(self) -> bool:
        return self.max_seconds is not None and self.cpu_seconds >= self.max_seconds

    def save(self, out: Path) -> None:
        info = {
            "card": self.card,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "iteration": self.iteration,
            "losses": self.losses,
            "validation": self.validation,
            "done": self.done,
        }
        save_state(out / STATE_FILE, self.modules, self.optimizers, info)
        write_json(out / LOG_FILE, {"losses": self.losses, "validation": self.validation})


class _Run(GeneratorLoop):
    """One detector-trained generator (MISLGAN, Adv-Cam-Id, GAP): the generator, Chen's
    discriminator when the method has one, the frozen detectors."""

    def __init__(
        self,
        method: Method,
        config: GeneratorConfig,
        classifiers: list[nn.Module],
        target: int,
        train: torch.Tensor,
        val: torch.Tensor,
        card: dict[str, Any],
        seed: int,
    ) -> None:
        super().__init__(
            card,
            config.iterations,
            f"train {method.name} -> {card['target']}",
            config.max_hours,
        )
        self.method, self.config, self.classifiers = method, config, classifiers
        self.target, self.train, self.val, self.seed = target, train, val, seed
        self.gamma = config.gamma if method.discriminator else 0.0
        if config.warm_start and not method.perceptual:
            raise CamtraceError(f"{method.name} has no L1 term to warm-start on; use warm_start: 0")
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.modules["generator"] = method.build(config.generator_options())
            if self.gamma:
                self.modules["discriminator"] = Discriminator(card["patch_size"])
        if config.channels_last:
            self.generator.to(memory_format=torch.channels_last)
        # auto: bf16 where fast; a generator's own full-resolution convolutions (MISLGAN:
        # ~1.2 GFLOP a 64-px patch) dominate its training, ~3x faster in bf16 there
        self.precision = resolve_precision(config.precision, torch.device("cpu"), fp16=False)
        self.lr = config.lr or method.lr
        self.warm_lr = config.warm_lr or self.lr
        self.adam(self.lr, method.betas)

    def frozen(self) -> contextlib.AbstractContextManager[None]:
        return _frozen(self.classifiers)

    def batch(self) -> tuple[torch.Tensor]:
        """This iteration's patches: drawn by a generator seeded with (seed, iteration)."""
        rng = np.random.default_rng([self.seed, self.iteration])
        n = len(self.train)
        idx = rng.choice(n, self.config.batch_size, replace=n < self.config.batch_size)
        return (self.train[torch.from_numpy(np.sort(idx))].float(),)

    def step(self, x: torch.Tensor) -> dict[str, float]:
        """One discriminator update (MISLGAN) then one generator update on L_G (Eq. 2); in the
        ``warm_start`` iterations, one generator update on the L1 term alone."""
        g = self.generator.train()
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.precision, x.device):
            fake = ste_round(g(x).float())
        log = {"iteration": self.iteration + 1}
        warm = self.iteration < self.config.warm_start
        for group in self.optimizers["generator"].param_groups:
            group["lr"] = self.warm_lr if warm else self.lr
        if warm:
            l1 = perceptual_loss(fake, x)
            log["l1"] = l1.item()
            log["generator"] = self.update("generator", l1)
            return log
        if self.gamma:
            d = self.modules["discriminator"].train()
            log["discriminator"] = self.update(
                "discriminator", discriminator_loss(d, x, fake.detach())
            )
            d.project_constraints()
        ce = classification_loss(self.classifiers, fake, self.target)
        loss = self.config.beta * ce
        log["ce"] = ce.item()
        if self.method.perceptual:
            l1 = perceptual_loss(fake, x)
            loss = loss + self.config.alpha * l1
            log["l1"] = l1.item()
        if self.gamma:
            adv = adversarial_loss(self.modules["discriminator"], x, fake)
            loss = loss + self.gamma * adv
            log["adversarial"] = adv.item()
        log["generator"] = self.update("generator", loss)
        return log

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """SAR of each detector and mean PSNR of the 8-bit outputs on the validation patches."""
        hits = torch.zeros(len(self.classifiers))
        psnrs, ssims = [], []
        with eval_mode(self.generator):
            for lo in range(0, len(self.val), self.config.batch_size):
                x = self.val[lo : lo + self.config.batch_size].float()
                adv = self.generator.to_grid(self.generator(x), x)
                for k, c in enumerate(self.classifiers):
                    hits[k] += (c(adv).argmax(1) == self.target).sum()
                psnrs.append(psnr(adv, x))
                ssims.append(ssim(adv, x))
        return {
            "iteration": self.iteration,
            "sar": (hits / len(self.val)).tolist(),
            "psnr": torch.cat(psnrs).mean().item(),
            "ssim": torch.cat(ssims).mean().item(),
        }

    def good_enough(self, v: dict[str, Any]) -> bool:
        return min(v["sar"]) >= self.config.stop_sar and v["psnr"] >= self.config.psnr_threshold(
            self.method
        )


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit grid in the forward pass, identity in the backward pass."""
    return x + (x.round() - x).detach()


def classification_loss(classifiers: list[nn.Module], x: torch.Tensor, target: int) -> torch.Tensor:
    """Chen Eq. 4, cross-entropy toward ``target``, averaged over an ensemble (GAP, SpoC)."""
    labels = torch.full((len(x),), target, dtype=torch.long)
    return torch.stack([F.cross_entropy(c(x).float(), labels) for c in classifiers]).mean()


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Wang et al. 2004: 11x11 Gaussian window of sigma 1.5, windows inside
    the image, averaged over colours) of two uint8-valued float batches, by kornia."""
    return kornia.metrics.ssim(a / 255, b / 255, SSIM_WINDOW, padding="valid").mean((1, 2, 3))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of two uint8-valued float batches; identical images count as
    differing by one grey level in one value (the largest finite 8-bit PSNR)."""
    mse = (a - b).square().flatten(1).mean(1)
    return 10 * torch.log10(255**2 / mse.clamp_min(1 / a[0].numel()))


@contextlib.contextmanager
def _frozen(classifiers: list[nn.Module]) -> Iterator[None]:
    """Classifiers in eval mode with no parameter gradients; their state restored after."""
    params = [p for c in classifiers for p in c.parameters()]
    flags = [p.requires_grad for p in params]
    with contextlib.ExitStack() as stack:
        for c in classifiers:
            stack.enter_context(eval_mode(c))
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(params, flags, strict=True):
                p.requires_grad_(flag)


def _shared_classes(classifiers: list[nn.Module]) -> list[str]:
    if not classifiers:
        raise CamtraceError("generator training: give at least one detector to train against")
    classes = [list(getattr(c, "classes", [])) for c in classifiers]
    if not classes[0] or any(c != classes[0] for c in classes):
        raise CamtraceError(
            "generator training: the detectors must share one class list (their .classes); "
            f"got {classes}"
        )
    return classes[0]


def _target_index(target: int | str, classes: list[str]) -> int:
    if isinstance(target, str) and target in classes:
        return classes.index(target)
    if isinstance(target, (int, np.integer)) and 0 <= target < len(classes):
        return int(target)
    raise CamtraceError(f"generator target {target!r} is not one of the detector's {classes}")


def as_patches(array: np.ndarray | torch.Tensor, what: str) -> torch.Tensor:
    """uint8 (N, H, W, 3) patches as a uint8 (N, 3, H, W) tensor."""
    t = torch.as_tensor(array)
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3 or len(t) == 0:
        raise CamtraceError(
            f"generator training: {what} patches must be uint8 (N, H, W, 3) with N >= 1, "
            f"got {t.dtype} {tuple(t.shape)}"
        )
    if t.shape[1] != t.shape[2] or t.shape[1] % 4:
        raise CamtraceError(
            f"generator training: {what} patches are {t.shape[1]}x{t.shape[2]}; use square "
            "patches whose side is a multiple of 4 (Chen: 256)"
        )
    return t.permute(0, 3, 1, 2).contiguous()


class StaleGeneratorRun(CamtraceError):
    """A generator folder holding a training of other settings, data or detectors than the
    ones asked for now."""


BUDGET = ("iterations", "max_hours")  # how long to train, not what: a resumable state may change it


def same_run(saved: dict[str, Any], wanted: dict[str, Any], out: Path, budget: bool = True) -> None:
    """One-line error (:class:`StaleGeneratorRun`) when ``out`` holds a training of
    something else; ``budget=False`` (an unfinished state) lets the :data:`BUDGET` differ,
    so a training resumes under a longer or shorter budget."""
    keys = ("method", "target", "classes", "patch_size", "detectors", "embedder", "data", "config")

    def part(card: dict[str, Any], key: str) -> Any:
        value = card.get(key)
        if key == "config" and not budget and isinstance(value, dict):
            return {k: v for k, v in value.items() if k not in BUDGET}
        return value

    differ = [k for k in keys if part(saved, k) != part(wanted, k)]
    if differ:
        raise StaleGeneratorRun(
            f"{out}: holds a {saved.get('method')} generator training with another "
            f"{', '.join(differ)}; use another out_dir or resume=False"
        )
