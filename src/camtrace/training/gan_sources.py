"""Train the synthetic-image sources and write their images: SpoC's set S (Cozzolino et al.
2021, Sec. 5.1: 20,000 training and 2,000 test images per GAN, BigGAN for testing only).

``make_synthetic`` trains each source of :data:`camtrace.models.gan_sources.SOURCES` on crops
of the real manifest's training photos, then writes PNGs and a manifest (model
``Synthetic_<NAME>``, split column) that flow through the same patch pipeline as SimCam
photos. The held-out source gets eval images only. The noise generators are trained as GANs
with the non-saturating loss (Goodfellow et al. 2014) against a spectrally normalised
discriminator, Adam lr 2e-4, betas (0.5, 0.999) (Radford et al. 2016); the autoencoder with
the L1 reconstruction loss, and its images are reconstructions of real crops of the same
split (an image-to-image translator's output). A folder made with the same settings and real
manifest (``synthetic.json``) is returned as is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from camtrace._version import __version__
from camtrace.data.codec import save_image
from camtrace.data.manifest import MANIFEST_NAME, Manifest, Record
from camtrace.data.splits import SPLITS
from camtrace.data.synthetic import MAKE, real_crops, source_model
from camtrace.errors import CamtraceError
from camtrace.io import write_json
from camtrace.models.gan_sources import HELD_OUT, LATENT, SOURCES, Discriminator, build_source

CONFIG_NAME = "synthetic.json"
IMAGES_DIR = "images"


@dataclass(frozen=True)
class SourceConfig:
    """Sizes of the sources and of their image sets (CPU-sized defaults; SpoC: 256 px,
    20,000 / 2,000 images per source)."""

    size: int = 64
    scale: int = 2  # crops of size * scale px, box-averaged to size
    width: int = 8  # channels at the output side, doubled per up-sampling step inwards
    crops: int = 1024  # real training crops each source learns from
    iterations: int = 100
    batch_size: int = 16
    lr: float = 2e-4
    train: int = 200  # images per training source and split
    val: int = 50
    eval: int = 100
    seed: int = 0

    def count(self, split: str) -> int:
        return {"train": self.train, "val": self.val, "eval": self.eval}[split]


def to_unit(images_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1], the sources' pixel range."""
    x = torch.as_tensor(images_uint8).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8, rounded."""
    pixels = ((x.detach() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).numpy()


def source_seed(name: str, seed: int) -> int:
    """A seed per source, stable across runs and independent of the order sources are made."""
    return zlib.crc32(f"{name}:{seed}".encode())


def train_source(
    name: str, crops: np.ndarray, config: SourceConfig, progress: bool = True
) -> nn.Module:
    """Source ``name`` trained on ``crops`` (N, size, size, 3) uint8; returned in eval mode."""
    torch.manual_seed(source_seed(name, config.seed))
    generator = build_source(name, config.size, config.width)
    real = to_unit(crops)
    g_opt = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=(0.5, 0.999))
    critic = None if generator.conditional else Discriminator(config.size, config.width)
    d_opt = None
    if critic is not None:
        d_opt = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=(0.5, 0.999))
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"train {source_model(name)}", total=config.iterations)
        for _ in range(config.iterations):
            batch = real[torch.randint(len(real), (config.batch_size,))]
            if critic is None:
                g_loss = F.l1_loss(generator(batch), batch)
            else:
                fake = generator(torch.randn(config.batch_size, LATENT))
                d_loss = (
                    F.softplus(-critic(batch)).mean() + F.softplus(critic(fake.detach())).mean()
                )
                d_opt.zero_grad()
                d_loss.backward()
                d_opt.step()
                g_loss = F.softplus(-critic(fake)).mean()
            g_opt.zero_grad()
            g_loss.backward()
            g_opt.step()
            bar.advance(task)
    return generator.eval()


@torch.no_grad()
def generate(generator: nn.Module, count: int, inputs: np.ndarray | None = None) -> np.ndarray:
    """``count`` uint8 images (N, H, W, 3): from noise (the torch RNG), or for an
    image-to-image source, the outputs on ``inputs`` (N, H, W, 3) uint8."""
    if generator.conditional:
        if inputs is None or len(inputs) != count:
            raise CamtraceError(f"an image-to-image source needs {count} input images")
        return to_uint8(generator(to_unit(inputs)))
    return to_uint8(generator(torch.randn(count, LATENT)))


def make_synthetic(
    real: Manifest,
    out: str | Path,
    sources: tuple[str, ...] = tuple(SOURCES),
    held_out: tuple[str, ...] = (HELD_OUT,),
    config: SourceConfig | None = None,
    progress: bool = True,
) -> Manifest:
    """Train ``sources`` on the real manifest's ``train`` photos, write their images as
    ``out/images/<model>_<split>_<k>.png`` and ``out/manifest.csv``; ``held_out`` sources
    get only eval images. Seeded; a finished folder with the same key is returned as is."""
    config = config or SourceConfig()
    out = Path(out)
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise CamtraceError(f"unknown synthetic sources {unknown}; choose among {sorted(SOURCES)}")
    if not set(held_out) <= set(sources):
        raise CamtraceError(
            f"held-out sources {sorted(set(held_out) - set(sources))} are not among the sources "
            "made; add them to sources"
        )
    key = {
        "camtrace_version": __version__,
        "config": dataclasses.asdict(config),
        "sources": list(sources),
        "held_out": sorted(held_out),
        "real_manifest": real.digest(),
    }
    key["digest"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    done = out / CONFIG_NAME
    if done.is_file() and json.loads(done.read_text()).get("digest") == key["digest"]:
        return Manifest.load(out / MANIFEST_NAME)
    done.unlink(missing_ok=True)
    train_rows = real.split("train")
    if len(train_rows) == 0:
        raise CamtraceError(
            f"{real.root}: no 'train' rows to learn from; split the manifest first "
            "('camtrace split')"
        )
    records: list[Record] = []
    for name in sources:
        rng = np.random.default_rng(source_seed(name, config.seed))
        crops = real_crops(train_rows, config.crops, config.size, config.scale, rng)
        generator = train_source(name, crops, config, progress)
        splits = ("eval",) if name in held_out else SPLITS
        for split in splits:
            records += _write_images(name, generator, split, real, config, rng, out)
    manifest = Manifest(records, out)
    manifest.save(out / MANIFEST_NAME)
    write_json(done, key)
    return Manifest.load(out / MANIFEST_NAME)


def _write_images(
    name: str,
    generator: nn.Module,
    split: str,
    real: Manifest,
    config: SourceConfig,
    rng: np.random.Generator,
    out: Path,
) -> list[Record]:
    """Generate one split of a source and save it; an image-to-image source translates real
    crops of the same split (of every row if the real manifest has none in that split)."""
    count = config.count(split)
    inputs = None
    if generator.conditional:
        rows = real.split(split) if len(real.split(split)) else real
        inputs = real_crops(rows, count, config.size, config.scale, rng)
    model = source_model(name)
    records = []
    for k, image in enumerate(generate(generator, count, inputs)):
        rel = f"{IMAGES_DIR}/{model}_{split}_{k:05d}.png"  # relative to the manifest's root
        save_image(out / rel, image)
        records.append(Record(rel, MAKE, model, "0", f"{name}-{split}{k:05d}", str(k), split))
    return records
