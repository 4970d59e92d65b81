"""Generative attacks: a generator learns the target camera's traces once, then spoofs any
image in one forward pass (docs/architecture.md, layer 3).

- MISLGAN (Chen et al. 2019) and Adv-Cam-Id (the same without discriminator): ``mislgan.py``;
- GAP (Poursaeed et al. 2018), image-dependent and targeted: ``gap.py``;
- SpoC (Cozzolino et al. 2021), trained on target-camera images alone: its networks and
  losses (``spoc.py``), the perceptual loss (``perceptual.py``), embedder pretraining
  (``spoc_embedder.py``: :func:`train_embedder`) and generator training (``spoc_training.py``:
  :func:`train_spoc`);
- the methods by name (``methods.py``), checkpoints with their card and resumable training
  state (``checkpoint.py``), training (``training.py``: :func:`train_generator`) and the
  attack call (``attack.py``: registered as "mislgan", "advcamid", "gap", "spoc" in
``make_attack``).
"""

from camtrace.attacks.generative.attack import (
    AdvCamIdAttack,
    GAPAttack,
    GenerativeAttack,
    MISLGANAttack,
    SpoCAttack,
)
from camtrace.attacks.generative.checkpoint import load_generator, read_generator_card
from camtrace.attacks.generative.gap import GAPGenerator
from camtrace.attacks.generative.methods import METHODS
from camtrace.attacks.generative.mislgan import Discriminator, MISLGANGenerator, SyntheticCFA
from camtrace.attacks.generative.spoc import Embedder, SpoCDiscriminator, SpoCGenerator
from camtrace.attacks.generative.spoc_embedder import EmbedderConfig, load_embedder, train_embedder
from camtrace.attacks.generative.spoc_training import SpoCConfig, train_spoc
from camtrace.attacks.generative.training import (
    GeneratorConfig,
    StaleGeneratorRun,
    train_generator,
)

__all__ = [
    "METHODS",
    "AdvCamIdAttack",
    "Discriminator",
    "Embedder",
    "EmbedderConfig",
    "GAPAttack",
    "GAPGenerator",
    "GenerativeAttack",
    "GeneratorConfig",
    "MISLGANAttack",
    "MISLGANGenerator",
    "SpoCAttack",
    "SpoCConfig",
    "SpoCDiscriminator",
    "SpoCGenerator",
    "StaleGeneratorRun",
    "SyntheticCFA",
    "load_embedder",
    "load_generator",
    "read_generator_card",
    "train_embedder",
    "train_generator",
    "train_spoc",
]
