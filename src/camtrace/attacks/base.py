"""The attack contract and the one loop every iterative gradient attack shares (its losses:
:mod:`camtrace.attacks.losses`; the 8-bit grid it rounds to: :mod:`camtrace.attacks.grid`).

``attack(detector, images_uint8, target=None) -> (adv_uint8, info)`` (docs/architecture.md): a
callable object per attack, configured at construction. Epsilon and steps are in 0-255 pixel
units. The shared loop is: gradient step -> projection onto the eps ball (Linf or L2) and
[0, 255] -> rounding to the 8-bit grid (the model always sees a uint8-valued iterate; the
float iterate is kept so steps smaller than one grey level accumulate, i.e. a straight-through
estimator) -> per-sample early stop once the uint8 iterate succeeds (after JPEG too, if asked).

The success check costs no forward pass of its own: the logits of the gradient pass at step
t + 1 are those of the iterate made by step t, and the iterate after the last step is judged
once at the end, only for the samples not already judged in the loop. Gradient passes may run
in bf16 (:mod:`camtrace.attacks.precision`); every verdict is an fp32 forward on uint8 values.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from rich.progress import Progress
from torch import nn

from camtrace.attacks.grid import round_in_l2_ball, round_in_linf_ball
from camtrace.attacks.losses import LOSSES
from camtrace.attacks.options import AttackOptions, configure
from camtrace.attacks.precision import AttackModel, resolve_precision
from camtrace.data.codec import Jpeg, recompress
from camtrace.errors import CamtraceError
from camtrace.hardware import attack_pass
from camtrace.models.inference import eval_mode
from camtrace.registry import Registry

Images = torch.Tensor | np.ndarray
Target = int | torch.Tensor | np.ndarray | list[int] | None
NORMS = ("linf", "l2")


def require(condition: bool, message: str) -> None:
    """Raise a one-line :class:`CamtraceError` for a bad attack parameter."""
    if not condition:
        raise CamtraceError(message)


@dataclass
class AttackInfo:
    """Per-sample outcome (CPU tensors, one entry per image).

    ``success`` is measured on the uint8 output, and also after JPEG when the attack has
    ``jpeg`` set (``jpeg_success`` alone is given beside); ``float_success`` on the float
    iterate before rounding, reported beside and never instead. ``targeted`` says whether
    success means reaching ``target`` or leaving ``labels`` (the detector's clean prediction,
    or the true labels given). ``target`` is the class each sample was pushed toward (LLCM
    picks it itself), None when untargeted. Norms are of the uint8 perturbation, in pixel
    units; L0 counts changed values (pixel x channel). ``scores`` is the attacked detector's
    fp32 soft-max on each uint8 output (``jpeg_scores`` after the JPEG, when asked): the one
    verdict ``success`` is read from, which evaluation takes as it is
    (:func:`camtrace.evaluation.attack_metrics.attack_metrics`) instead of judging again.
    """

    success: torch.Tensor
    float_success: torch.Tensor
    jpeg_success: torch.Tensor | None
    steps: torch.Tensor
    l0: torch.Tensor
    l2: torch.Tensor
    linf: torch.Tensor
    labels: torch.Tensor
    target: torch.Tensor | None
    targeted: bool
    scores: torch.Tensor
    jpeg_scores: torch.Tensor | None

    @classmethod
    def cat(cls, parts: list[AttackInfo]) -> AttackInfo:
        """Join the infos of consecutive batches."""

        def join(name: str) -> torch.Tensor | None:
            values = [getattr(p, name) for p in parts]
            return None if values[0] is None else torch.cat(values)

        names = (
            "success",
            "float_success",
            "jpeg_success",
            "steps",
            "l0",
            "l2",
            "linf",
            "labels",
            "target",
            "scores",
            "jpeg_scores",
        )
        return cls(**{n: join(n) for n in names}, targeted=parts[0].targeted)

    def summary(self) -> dict[str, float]:
        """Rates and mean norms, for metrics.json."""
        out = {
            "success_rate": self.success.float().mean().item(),
            "float_success_rate": self.float_success.float().mean().item(),
            "mean_steps": self.steps.float().mean().item(),
            "mean_l0": self.l0.float().mean().item(),
            "mean_l2": self.l2.mean().item(),
            "mean_linf": self.linf.mean().item(),
        }
        if self.jpeg_success is not None:
            out["jpeg_success_rate"] = self.jpeg_success.float().mean().item()
        return out


@dataclass
class Goal:
    """What counts as success: leaving ``labels`` (untargeted) or reaching ``target``.
    ``settled`` marks the samples whose success the loop already judged in fp32 (after JPEG
    too, if asked) on an iterate it then froze."""

    labels: torch.Tensor
    target: torch.Tensor | None
    settled: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.settled = torch.zeros_like(self.labels, dtype=torch.bool)

    def reached(self, logits: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        pred = logits.argmax(1)
        return pred != self.labels[idx] if self.target is None else pred == self.target[idx]


class Attack:
    """Base of every attack: input conversion, batching, eval mode, the success measurement.

    The constructor takes the :class:`AttackOptions` every attack shares, as ``options=`` or
    as keywords (``jpeg=90, batch_size=64``); a subclass's constructor lists only its paper
    parameters and passes ``**options`` on. Subclasses implement :meth:`run` (the attack
    proper, on float pixels of one batch) and may override :meth:`aim` (which class to push
    toward); ``inapplicable`` names the options that mean nothing for them, and why;
    ``needs_gradient`` says whether they differentiate the detector (a hand-crafted one,
    Marra 2017's, has no gradient and is refused).
    """

    name: ClassVar[str] = ""
    matrix: ClassVar[bool] = True  # a column of the robustness matrix (one Linf budget)
    inapplicable: ClassVar[dict[str, str]] = {}
    needs_gradient: ClassVar[bool] = True

    def __init__(self, options: AttackOptions | None = None, **option_kw: Any) -> None:
        self.options = configure(self.name, options, option_kw, self.inapplicable)

    def rng(self, device: torch.device) -> torch.Generator | None:
        """The random generator of the ``seed`` option on ``device`` (None: torch's global)."""
        seed = self.options.seed
        return None if seed is None else torch.Generator(device).manual_seed(seed)

    def with_options(self, **changes: Any) -> Attack:
        """A copy with ``changes`` to its options, validated; this attack is unchanged."""
        changed = copy.copy(self)
        changed.options = configure(self.name, self.options, changes, self.inapplicable)
        return changed

    def __call__(
        self, detector: nn.Module, images: Images, target: Target = None, labels: Target = None
    ) -> tuple[Images, AttackInfo]:
        """Attack ``images`` (uint8 tensor (N, C, H, W) or numpy (N, H, W, C)); same kind back.

        ``target``: None (untargeted) or class indices (one int or one per image).
        ``labels``: true labels for untargeted attacks; default the detector's own prediction.
        """
        x, back = _as_nchw(images, self.name)
        if self.needs_gradient:
            require_gradient(detector, self.name)
        device, dtype = _device_of(detector), _dtype_of(detector)
        n = len(x)
        require(n > 0, f"{self.name}: got an empty batch of images")
        target_all = _as_labels(target, n, "target")
        labels_all = _as_labels(labels, n, "labels")
        size = self.options.batch_size
        advs, infos = [], []
        with eval_mode(detector), _bar(self.options.progress, n, self.name) as advance:
            model = None
            for lo in range(0, n, size):
                hi = min(lo + size, n)
                x0 = x[lo:hi].to(device, dtype, memory_format=torch.channels_last)
                if model is None:
                    precision, rng = self.precision(detector, x0), self.rng(device)
                    model = AttackModel(detector, precision, rng, attack_pass(device))
                adv, info = self._batch(
                    model,
                    x0,
                    None if target_all is None else target_all[lo:hi].to(device),
                    None if labels_all is None else labels_all[lo:hi].to(device),
                )
                advs.append(adv)
                infos.append(info)
                advance(hi - lo)
        return back(torch.cat(advs).to(x.device)), AttackInfo.cat(infos)

    def precision(self, detector: nn.Module, x0: torch.Tensor) -> str:
        """Arithmetic of the gradient passes on this detector and batch (the option, resolved)."""
        return resolve_precision(self.options, detector, x0)

    def aim(self, clean_logits: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor | None:
        """Class each sample is pushed toward (None: away from its label)."""
        return target

    def run(
        self, model: AttackModel, x0: torch.Tensor, goal: Goal, aim: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float iterate (N, C, H, W) in [0, 255] and steps used per sample."""
        raise NotImplementedError

    def reached(
        self,
        model: AttackModel,
        x: torch.Tensor,
        logits: torch.Tensor,
        goal: Goal,
        idx: torch.Tensor,
    ) -> torch.Tensor:
        """Per-sample success of the iterate ``x`` (uint8-valued) with the ``logits`` of its
        gradient pass: the goal is met on ``x`` in fp32 (bf16 logits are confirmed by an fp32
        forward of the samples they call successful) and, if ``jpeg`` is set, on its JPEG
        re-compression too. The samples that pass are marked settled in ``goal``."""
        ok = goal.reached(logits, idx)
        if model.precision != "fp32" and ok.any():
            sub = ok.nonzero().squeeze(1)
            ok[sub] = goal.reached(model.judge(x[sub]), idx[sub])
        jpeg = self.options.jpeg
        if jpeg is not None and ok.any():
            sub = ok.nonzero().squeeze(1)
            ok[sub] = goal.reached(model.judge(_recompressed(x[sub], jpeg)), idx[sub])
        goal.settled[idx[ok]] = True
        return ok

    def _batch(
        self,
        model: AttackModel,
        x0: torch.Tensor,
        target: torch.Tensor | None,
        labels: torch.Tensor | None,
    ) -> tuple[torch.Tensor, AttackInfo]:
        clean = model.judge(x0)
        _check_classes(target, clean.shape[1], "target")
        _check_classes(labels, clean.shape[1], "labels")
        labels = clean.argmax(1) if labels is None else labels
        goal = Goal(labels, target)
        aim = self.aim(clean, target)
        x_float, steps = self.run(model, x0, goal, aim)
        with torch.no_grad():
            adv = self.to_grid(x_float, x0)
            # a settled sample's uint8 output is the iterate the loop judged; the float variant
            # judges floats in its loop, so its uint8 outputs are all judged here
            settled = goal.settled if self.options.quantize else torch.zeros_like(goal.settled)
            on_uint8, todo = settled.clone(), (~settled).nonzero().squeeze(1)
            logits = model.judge(adv).float()  # every uint8 output, once: the one verdict
            on_uint8[todo] = goal.reached(logits[todo], todo)
            float_success = on_uint8.clone()
            off_grid = (x_float != adv).flatten(1).any(1).nonzero().squeeze(1)
            float_success[off_grid] = goal.reached(model.judge(x_float[off_grid]), off_grid)
            success, jpeg_success, jpeg_logits = on_uint8, None, None
            if self.options.jpeg is not None:
                jpeg_logits = model.judge(_recompressed(adv, self.options.jpeg)).float()
                jpeg_success = settled.clone()
                jpeg_success[todo] = goal.reached(jpeg_logits[todo], todo)
                success = on_uint8 & jpeg_success
            delta = (adv - x0).flatten(1)
        info = AttackInfo(
            success=success.cpu(),
            float_success=float_success.cpu(),
            jpeg_success=None if jpeg_success is None else jpeg_success.cpu(),
            steps=steps.cpu(),
            l0=(delta != 0).sum(1).cpu(),
            l2=delta.norm(dim=1).cpu(),
            linf=delta.abs().amax(1).cpu(),
            labels=labels.cpu(),
            target=None if aim is None else aim.cpu(),
            targeted=target is not None,
            scores=logits.softmax(1).cpu(),
            jpeg_scores=None if jpeg_logits is None else jpeg_logits.softmax(1).cpu(),
        )
        return (adv.to(torch.uint8) if self.options.quantize else x_float.detach()), info

    def to_grid(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Nearest 8-bit value of the float iterate."""
        return x.round().clamp(0, 255)


class GradientAttack(Attack):
    """The shared iterative loop (I-FGSM family): sign (Linf) or L2-normalised steps of size
    ``alpha`` on a ``loss`` (:data:`LOSSES`: the cross-entropy, Carlini & Wagner's margin or
    Croce & Hein's DLR), optional momentum ``mu`` on the L1-normalised gradient (MI-FGSM,
    Dong et al. 2018, eq. 6), projection, 8-bit rounding, per-sample early stop.

    With ``quantize=False`` (an option) the model sees float iterates, early stop looks at
    them and the float image is returned, to compare with torchattacks; ``success`` is still
    measured on its rounding. The option ``seed`` fixes the random start.

    ``through_jpeg=True`` (needs ``jpeg``) adds to the loss the same loss on a differentiable
    JPEG of the iterate (:meth:`Jpeg.differentiable`, always in fp32), an expectation over the
    two outcomes (stored as is, stored after compression) in the manner of Athalye et al.
    2018's EOT, so the perturbation is built to survive the compression it will be judged after.
    """

    def __init__(
        self,
        eps: float,
        alpha: float,
        steps: int,
        *,
        norm: str = "linf",
        random_start: bool = False,
        mu: float | None = None,
        loss: str = "ce",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        require(float(eps) > 0, f"{self.name}: eps={eps} must be > 0 (0-255 pixel units)")
        require(float(alpha) > 0, f"{self.name}: alpha={alpha} must be > 0 (0-255 pixel units)")
        require(int(steps) >= 1, f"{self.name}: steps={steps} must be >= 1")
        require(norm in NORMS, f"{self.name}: norm='{norm}' unknown; use 'linf' or 'l2'")
        require(mu is None or float(mu) >= 0, f"{self.name}: momentum mu={mu} must be >= 0")
        require(loss in LOSSES, f"{self.name}: loss={loss!r} unknown; use {', '.join(LOSSES)}")
        self.eps, self.alpha, self.steps, self.norm = float(eps), float(alpha), int(steps), norm
        self.random_start, self.mu, self.loss_name = random_start, mu, loss

    def transform_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        """Hook on the raw gradient before momentum and the step (TI smooths it here)."""
        return grad

    def loss(
        self, logits: torch.Tensor, goal: Goal, aim: torch.Tensor | None, idx: torch.Tensor
    ) -> torch.Tensor:
        """The attack's loss (:data:`LOSSES`) to ascend, on fp32 logits: away from the label,
        or toward ``aim``."""
        target = None if aim is None else aim[idx]
        return LOSSES[self.loss_name](logits.float(), goal.labels[idx], target)

    def run(
        self, model: AttackModel, x0: torch.Tensor, goal: Goal, aim: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        options = self.options
        x = self.start(x0, model.rng)
        momentum = torch.zeros_like(x0) if self.mu is not None else None
        steps = torch.zeros(len(x0), dtype=torch.long, device=x0.device)
        idx = torch.arange(len(x0), device=x0.device)
        for _ in range(self.steps):
            # while every sample is active, work on the whole tensors: no gather, no scatter
            whole = len(idx) == len(x0)
            xs, x0s = (x, x0) if whole else (x[idx], x0[idx])
            xq = self.seen(xs, x0s)
            logits, grad = model.gradient(
                xq, functools.partial(self.objective, model, goal, aim, idx)
            )
            if options.early_stop and self.steps > 1:  # one step (FGSM): every sample takes it
                done = self.reached(model, xq, logits, goal, idx)
                if done.any():
                    keep = ~done
                    idx, grad, xs, x0s, whole = idx[keep], grad[keep], xs[keep], x0s[keep], False
                    if idx.numel() == 0:
                        break
            with torch.no_grad():
                stepped = self.project(xs + self.alpha * self.direction(grad, momentum, idx), x0s)
                if whole:
                    x = stepped
                else:
                    x[idx] = stepped
                steps[idx] += 1
        return x, steps

    def objective(
        self,
        model: AttackModel,
        goal: Goal,
        aim: torch.Tensor | None,
        idx: torch.Tensor,
        x: torch.Tensor,
        logits: torch.Tensor,
        rows: slice,
    ) -> torch.Tensor:
        """The loss ascended on the samples ``idx[rows]`` (iterate ``x``, its ``logits``); with
        ``through_jpeg``, plus the same loss on the iterate's differentiable JPEG."""
        loss = self.loss(logits, goal, aim, idx[rows])
        if self.options.through_jpeg:
            jpeg = self.options.jpeg.differentiable(x)
            loss = loss + self.loss(model(jpeg), goal, aim, idx[rows])
        return loss

    def seen(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The iterate the model sees: on the 8-bit grid, or the float one if not quantising."""
        return self.to_grid(x, x0) if self.options.quantize else x

    def direction(
        self, grad: torch.Tensor, momentum: torch.Tensor | None, idx: torch.Tensor
    ) -> torch.Tensor:
        """Step direction: sign (Linf) or unit L2 of the (smoothed, momentum) gradient."""
        g = self.transform_gradient(grad)
        if momentum is not None:
            g = g / _flat_norm(g, 1) + self.mu * momentum[idx]
            momentum[idx] = g
        return g.sign() if self.norm == "linf" else g / _flat_norm(g, 2)

    def project(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Projection onto the eps ball around ``x0`` and onto [0, 255]."""
        delta = x - x0
        if self.norm == "linf":
            delta = delta.clamp(-self.eps, self.eps)
        else:
            delta = delta * (self.eps / delta.flatten(1).norm(dim=1)).clamp(max=1).view(
                -1, *[1] * (x.ndim - 1)
            )
        return (x0 + delta).clamp(0, 255)

    def start(self, x0: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Starting point: ``x0``, or a random point of the eps ball (uniform per value for Linf;
        a Gaussian direction at a uniform radius for L2, as torchattacks does), drawn from
        ``gen``."""
        if not self.random_start:
            return x0.clone()
        # drawn in logical (N, C, H, W) order whatever x0's memory layout, as torchattacks draws
        noise = torch.empty(x0.shape, device=x0.device, dtype=x0.dtype)
        if self.norm == "linf":
            delta = noise.uniform_(-self.eps, self.eps, generator=gen)
        else:
            delta = noise.normal_(generator=gen)
            radius = torch.empty(len(x0), device=x0.device, dtype=x0.dtype).uniform_(
                0, 1, generator=gen
            )
            delta = delta * (radius * self.eps / _flat_norm(delta, 2).flatten()).view(
                -1, *[1] * (x0.ndim - 1)
            )
        return torch.empty_like(x0).copy_(x0 + delta).clamp(0, 255)

    def to_grid(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Nearest 8-bit value that stays in the eps ball. Linf: values that rounding would
        push outside are rounded toward ``x0``. L2: see :func:`round_in_l2_ball`."""
        if self.norm == "l2":
            return (x0 + round_in_l2_ball(x - x0, self.eps)).clamp(0, 255)
        return round_in_linf_ball(x, x0, self.eps)


def _recompressed(x: torch.Tensor, jpeg: Jpeg) -> torch.Tensor:
    """JPEG re-compression of uint8-valued float images, back as float in their layout."""
    if len(x) == 0:
        return x
    out = recompress(x.round().clamp(0, 255).to(torch.uint8), jpeg)
    return out.to(x.dtype).contiguous(memory_format=torch.channels_last)


def _flat_norm(g: torch.Tensor, p: int) -> torch.Tensor:
    """Per-sample Lp norm, shaped to broadcast against ``g`` (never zero)."""
    return g.flatten(1).norm(p=p, dim=1).clamp_min(1e-12).view(-1, *[1] * (g.ndim - 1))


def _as_nchw(images: Images, name: str) -> tuple[torch.Tensor, Callable[[torch.Tensor], Images]]:
    """uint8 (N, C, H, W) tensor of the input, and the function giving the output its kind."""
    if isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4:
        return torch.from_numpy(images).permute(
            0, 3, 1, 2
        ), lambda t: t.permute(0, 2, 3, 1).cpu().numpy()
    if isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.ndim == 4:
        return images, lambda t: t
    shape = tuple(getattr(images, "shape", ()))
    kind = f"{type(images).__name__} {getattr(images, 'dtype', '')} {shape}"
    raise CamtraceError(
        f"{name}: images must be a uint8 tensor (N, C, H, W) or uint8 numpy array (N, H, W, C), "
        f"got {kind}"
    )


def _as_labels(value: Target, n: int, what: str) -> torch.Tensor | None:
    """Class indices, one per image (an int is repeated)."""
    if value is None:
        return None
    t = torch.as_tensor(value).long().flatten().cpu()
    if t.numel() == 1:
        t = t.expand(n)
    require(
        t.numel() == n,
        f"{what}: got {t.numel()} class indices for {n} images; give one int or one per image",
    )
    return t.clone()


def _check_classes(value: torch.Tensor | None, num_classes: int, what: str) -> None:
    bad = None if value is None else value[(value < 0) | (value >= num_classes)]
    if bad is not None and bad.numel():
        raise CamtraceError(
            f"{what}: class index {bad[0].item()} outside 0-{num_classes - 1} of this detector"
        )


def require_gradient(detector: nn.Module, name: str) -> None:
    """Refuse a detector (or an ensemble or wrapper holding one) whose features have no
    gradient (``ModelSpec.handcrafted``: Marra 2017's SPAM histograms)."""
    for m in detector.modules():
        spec = getattr(m, "spec", None)
        require(
            spec is None or not getattr(spec, "handcrafted", False),
            f"{name}: {getattr(spec, 'name', '')}'s hand-crafted features have no gradient; "
            "attack it with square (score-based) or a generator, or craft on a CNN and transfer",
        )


def _device_of(detector: nn.Module) -> torch.device:
    for tensor in (*detector.parameters(), *detector.buffers()):
        return tensor.device
    return torch.device("cpu")


def _dtype_of(detector: nn.Module) -> torch.dtype:
    """The detector's floating dtype: the attack computes in it (float32 by default)."""
    for tensor in detector.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


@contextmanager
def _bar(enabled: bool, total: int, name: str) -> Iterator[Callable[[int], None]]:
    with Progress(disable=not enabled, transient=True) as bar:
        task = bar.add_task(f"attack {name}", total=total)
        yield lambda k: bar.advance(task, k)


ATTACKS: Registry[type[Attack]] = Registry("attack")
"""Every attack by the name ``make_attack`` and the configs take (``@register_attack``)."""
register_attack = ATTACKS.register(lambda cls: cls.name)


def matrix_attacks() -> tuple[str, ...]:
    """The attacks the robustness matrix takes as columns (one Linf budget: not PGD-L2, not
    the generative ones, which have their own column)."""
    return tuple(name for name, cls in ATTACKS.items() if cls.matrix)
