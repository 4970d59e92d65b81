"""Generative attacks: a generator learns the target camera's traces once, then spoofs any
image in one forward pass (docs/architecture.md, layer 3).

- MISLGAN (Chen et al. 2019) and Adv-Cam-Id (the same without discriminator): ``mislgan.py``;
- GAP (Poursaeed et al. 2018), image-dependent and targeted: ``gap.py``;
- the methods by name (``methods.py``), checkpoints with their card and resumable training
  state (``checkpoint.py``), training (``training.py``: :func:`train_generator`) and the
  attack call (``attack.py``: registered as "mislgan", "advcamid", "gap" in ``make_attack``).
"""

from camtrace.attacks.generative.attack import (
    AdvCamIdAttack,
    GAPAttack,
    GenerativeAttack,
    MISLGANAttack,
)
from camtrace.attacks.generative.checkpoint import load_generator, read_generator_card
from camtrace.attacks.generative.gap import GAPGenerator
from camtrace.attacks.generative.methods import METHODS
from camtrace.attacks.generative.mislgan import Discriminator, MISLGANGenerator, SyntheticCFA
from camtrace.attacks.generative.training import GeneratorConfig, train_generator

__all__ = [
    "METHODS",
    "AdvCamIdAttack",
    "Discriminator",
    "GAPAttack",
    "GAPGenerator",
    "GenerativeAttack",
    "GeneratorConfig",
    "MISLGANAttack",
    "MISLGANGenerator",
    "SyntheticCFA",
    "load_generator",
    "read_generator_card",
    "train_generator",
]
