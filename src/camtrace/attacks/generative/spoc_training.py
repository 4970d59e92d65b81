"""Training one SpoC generator per target camera model (Cozzolino et al. 2021 Sec. 4-5).

``train_spoc(target_uint8, synthetic_uint8, val_uint8, embedder, target, config, out_dir)``
sees only patches of the target camera (the set R_M) and the images to spoof (the set S: in
SpoC synthetic, GAN-made images; real photos of other cameras are camtrace's extension): no
detector, no other camera's labels. Before training, the frozen embedder gives the anchor
e_M = E_z[E(z)] and the reference distance d_ref = E_z[||E(z) - e_M||_1] over ALL the target
patches given (Sec. 4.2: both expectations are over R_M). Each iteration draws ``batch_size``
(SpoC: 10) images of S and as many of R_M; the discriminator is updated on the 30 of them
(real, spoofed, inputs: Eq. 5), then the generator on L_G (Eq. 1-4, 6) with L_REC weighted by
``lambda_rec``: 1 in Eq. 2, on an L1 scale SpoC does not state; on the per-pixel mean on
[-1, 1], weights 1, 10 and 100 gave 23, 30 and 38 dB after 200 iterations toward Halden H20
(configs/spoc-rec.yaml, kept in results/spoc-rec/), so camtrace takes 10, the weight at
SpoC's ~31 dB. D and E see the spoof rounded to the 8-bit grid (straight-through gradient),
as the attack is judged on uint8.
Ablations (supp. Sec. B): ``lambda_a = 0`` drops D (only-embedder), ``lambda_e = 0`` drops E
(only-discriminator; then no embedder is needed).

Every ``val_every`` iterations the generator spoofs the validation images of S and logs their
mean PSNR, their mean embedder distance d(x) and the share of them within d_ref of e_M (no
detector: SpoC never sees one). Resumable with the same result, as ``train_generator``:
weights, statistics, Adam moments, iteration and logs saved atomically every ``save_every``
iterations, each batch drawn by a generator seeded with (seed, iteration). The checkpoint's
card says method spoc, the target camera, the embedder's digest, the data digests and e_M's
d_ref; it names no detector classes: the attack finds the target among a detector's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from camtrace.attacks.generative.checkpoint import (
    array_digest,
    read_generator_card,
    weights_digest,
)
from camtrace.attacks.generative.methods import get_method
from camtrace.attacks.generative.perceptual import PerceptualLoss
from camtrace.attacks.generative.spoc import (
    Embedder,
    SpoCDiscriminator,
    adversarial_loss,
    anchor,
    discriminator_loss,
    distance_loss,
    feature_matching_loss,
    l1_distance,
    reconstruction_loss,
)
from camtrace.attacks.generative.spoc_embedder import MIN_SIDE, load_embedder
from camtrace.attacks.generative.training import (
    GENERATOR_FILE,
    STATE_FILE,
    GeneratorLoop,
    as_patches,
    precision_option,
    psnr,
    same_run,
    ssim,
    ste_round,
)
from camtrace.errors import CamtraceError
from camtrace.hardware import autocast, resolve_precision
from camtrace.models.inference import eval_mode
from camtrace.schema import Section, option


class SpoCConfig(Section):
    """SpoC's generator training (Sec. 5; the loss weights of Eq. 1), one per target camera;
    the config's ``spoc.training`` section. Resuming needs the same settings."""

    iterations: int = option(500, "iterations (SpoC: 50,000)", minimum=1)
    lambda_rec: float = option(
        10.0,
        "weight of L_REC, the per-pixel mean absolute difference on [-1, 1] (SpoC: 1, on a "
        "scale it does not state; 10 holds SpoC's ~31 dB: configs/spoc-rec.yaml)",
        minimum=0,
    )
    batch_size: int = option(10, "images of S per iteration (SpoC: 10; D sees 3x)", minimum=1)
    lambda_e: float = option(1.0, "weight of the embedder terms (SpoC: 1)", minimum=0)
    lambda_a: float = option(0.1, "weight of the adversarial term (SpoC: 0.1)", minimum=0)
    lambda_p: float = option(0.001, "weight of the perceptual term (SpoC: 0.001)", minimum=0)
    lambda_f: float = option(
        0.01, "weight of feature matching in the embedder term (SpoC: 0.01)", minimum=0
    )
    margin: float = option(0.01, "margin of L_DST's triplet loss (SpoC: 0.01)", minimum=0)
    lr: float = option(1e-4, "Adam learning rate of G and D (SpoC: 1e-4)", minimum=0)
    betas: tuple[float, float] = option((0.5, 0.999), "Adam betas (SpoC: 0.5, 0.999)", minimum=0)
    vgg_weights: str | None = option(
        None, "VGG-19 safetensors for L_PER (default: fixed random VGG-19 features)"
    )
    val_every: int = option(50, "iterations between validations", minimum=1)
    save_every: int = option(50, "iterations between saved training states", minimum=1)
    max_hours: float | None = option(
        None,
        "stop after this much CPU time of training (all threads), summed over sittings "
        "(default: none)",
        minimum=0,
    )
    precision: str = precision_option("G, D, E and VGG", "every loss and the validation")
    channels_last: bool = option(True, "the four networks in channels-last memory format")


def train_spoc(
    target_uint8: np.ndarray | torch.Tensor,
    synthetic_uint8: np.ndarray | torch.Tensor,
    val_uint8: np.ndarray | torch.Tensor,
    embedder: str | Path | Embedder | None,
    target: str,
    config: SpoCConfig | None = None,
    out_dir: str | Path = "spoc",
    resume: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Train the SpoC generator of camera model ``target`` from its patches (R_M) and the
    patches to spoof (S, train and validation), all uint8 (N, H, W, 3) of one size, with the
    pre-trained ``embedder`` (a checkpoint of :func:`train_embedder` or the module; None only
    with ``lambda_e = 0``); return the checkpoint path. ``resume``, ``seed`` and ``progress`` as
    :func:`camtrace.attacks.generative.train_generator`."""
    config = config or SpoCConfig()
    if len(target_uint8) == 0:
        raise CamtraceError(
            f"spoc training: no images of the target camera model '{target}'; give its "
            "patches (e.g. the train-split patches whose model is the target)"
        )
    real = as_patches(target_uint8, f"spoc target '{target}'")
    synthetic, val = as_patches(synthetic_uint8, "spoc input"), as_patches(val_uint8, "spoc val")
    side = int(real.shape[-1])
    if side < MIN_SIDE or synthetic.shape[-1] != side or val.shape[-1] != side:
        raise CamtraceError(
            f"spoc training: patches of {side}, {synthetic.shape[-1]} and {val.shape[-1]} px; "
            f"give target, input and validation patches of one size, at least {MIN_SIDE}"
        )
    if embedder is None and config.lambda_e:
        raise CamtraceError(
            "spoc training: no embedder; pre-train one with train_embedder (SimCam preset "
            "'many') or set lambda_e=0 (the only-discriminator ablation)"
        )
    if embedder is not None and not isinstance(embedder, nn.Module):
        embedder = load_embedder(embedder)
    card = {
        "method": "spoc",
        "paper": get_method("spoc").paper,
        "target": str(target),
        "patch_size": side,
        "embedder": None if embedder is None else weights_digest(embedder),
        "data": {
            "target": array_digest(real),
            "input": array_digest(synthetic),
            "val": array_digest(val),
            "target_patches": len(real),
            "input_patches": len(synthetic),
            "val_patches": len(val),
        },
        "config": json.loads(json.dumps({**config.model_dump(), "seed": seed})),
    }
    out = Path(out_dir)
    if resume and (out / GENERATOR_FILE).is_file():
        same_run(read_generator_card(out / GENERATOR_FILE), card, out)
        return out / GENERATOR_FILE
    run = _SpoCRun(config, real, synthetic, val, embedder, card, seed)
    if resume and (out / STATE_FILE).is_file():
        run.restore(out / STATE_FILE)
    return run.fit(out, config.val_every, config.save_every, progress)


class _SpoCRun(GeneratorLoop):
    """One SpoC training: G, D, the frozen E and its anchor, the optimisers, the logs."""

    def __init__(
        self,
        config: SpoCConfig,
        real: torch.Tensor,
        synthetic: torch.Tensor,
        val: torch.Tensor,
        embedder: Embedder | None,
        card: dict[str, Any],
        seed: int,
    ) -> None:
        super().__init__(
            card, config.iterations, f"train spoc -> {card['target']}", config.max_hours
        )
        self.config, self.real, self.synthetic, self.val = config, real, synthetic, val
        self.seed = seed
        self.embedder = embedder.eval().requires_grad_(False) if embedder is not None else None
        self.e_m, self.d_ref = self._anchor() if embedder is not None else (None, None)
        self.perceptual = PerceptualLoss(config.vgg_weights) if config.lambda_p else None
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.modules["generator"] = get_method("spoc").build()
            if config.lambda_a:
                self.modules["discriminator"] = SpoCDiscriminator()
        if config.channels_last:
            for net in (*self.modules.values(), self.embedder, self.perceptual):
                if net is not None:
                    net.to(memory_format=torch.channels_last)
        # auto: bf16 where fast; SpoC's four networks all run at full resolution, and an
        # iteration takes about half the time in bf16 on an AVX512-BF16 core
        self.precision = resolve_precision(config.precision, torch.device("cpu"), fp16=False)
        self.adam(config.lr, config.betas)

    def _run(self, net: nn.Module, x: torch.Tensor) -> Any:
        """``net(x)`` in the training's arithmetic, its output (or outputs) in fp32 for the
        losses."""
        with autocast(self.precision, x.device):
            out = net(x)
        return [o.float() for o in out] if isinstance(out, (list, tuple)) else out.float()

    @torch.no_grad()
    def _anchor(self) -> tuple[torch.Tensor, torch.Tensor]:
        """e_M and d_ref over every target patch (Sec. 4.2)."""
        step = 4 * self.config.batch_size
        e = torch.cat(
            [self.embedder(self.real[i : i + step].float()) for i in range(0, len(self.real), step)]
        )
        return anchor(e)

    def final_card(self) -> dict[str, Any]:
        return {
            "d_ref": None if self.d_ref is None else self.d_ref.item(),
            "perceptual": None if self.perceptual is None else self.perceptual.source,
        }

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This iteration's images of S and of R_M, drawn with (seed, iteration)."""
        rng, n = np.random.default_rng([self.seed, self.iteration]), self.config.batch_size
        picks = [
            torch.from_numpy(np.sort(rng.choice(len(t), n, replace=len(t) < n)))
            for t in (self.synthetic, self.real)
        ]
        return self.synthetic[picks[0]].float(), self.real[picks[1]].float()

    def step(self, x: torch.Tensor, z: torch.Tensor) -> dict[str, float]:
        """One D update on (z, G(x), x) (Eq. 5), then one G update on L_G (Eq. 1)."""
        c, g = self.config, self.generator.train()
        if c.channels_last:
            x, z = (t.contiguous(memory_format=torch.channels_last) for t in (x, z))
        spoof = ste_round(self._run(g, x))
        log: dict[str, float] = {"iteration": self.iteration + 1}
        rec = reconstruction_loss(spoof, x)
        loss, log["rec"] = c.lambda_rec * rec, rec.item()
        if self.perceptual is not None:
            with autocast(self.precision, x.device):  # its L1 distances are taken in fp32
                per = self.perceptual(spoof, x)
            loss, log["per"] = loss + c.lambda_p * per, per.item()
        if c.lambda_a:
            d = self.modules["discriminator"].train()
            loss_d = discriminator_loss(*self._run(d, torch.cat([z, spoof.detach(), x])).chunk(3))
            log["discriminator"] = self.update("discriminator", loss_d)
            adv = adversarial_loss(self._run(d, torch.cat([z, spoof, x])).chunk(3)[1])
            loss, log["adv"] = loss + c.lambda_a * adv, adv.item()
        if c.lambda_e:
            maps = self._run(self.embedder.features, spoof)
            dst = distance_loss(maps[-1].amax(dim=(-2, -1)), self.e_m, self.d_ref, c.margin)
            with torch.no_grad():
                real_maps = self._run(self.embedder.features, z)
            fm = feature_matching_loss(real_maps, maps)
            loss = loss + c.lambda_e * (dst + c.lambda_f * fm)
            log["dst"], log["fm"] = dst.item(), fm.item()
        log["generator"] = self.update("generator", loss)
        return log

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Mean PSNR of the 8-bit spoofs of the validation images, their mean embedder
        distance to e_M and the share within d_ref (SpoC's L_DST hinge without margin)."""
        psnrs, ssims, dists = [], [], []
        with eval_mode(self.generator):
            for lo in range(0, len(self.val), 4 * self.config.batch_size):
                x = self.val[lo : lo + 4 * self.config.batch_size].float()
                spoof = self.generator.to_grid(self.generator(x), x)
                psnrs.append(psnr(spoof, x))
                ssims.append(ssim(spoof, x))
                if self.embedder is not None:
                    dists.append(l1_distance(self.embedder(spoof), self.e_m))
        v: dict[str, Any] = {
            "iteration": self.iteration,
            "psnr": torch.cat(psnrs).mean().item(),
            "ssim": torch.cat(ssims).mean().item(),
        }
        if dists:
            d = torch.cat(dists)
            v["distance"], v["within_d_ref"] = (
                d.mean().item(),
                (d <= self.d_ref).float().mean().item(),
            )
        return v
