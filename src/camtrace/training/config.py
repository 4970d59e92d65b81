"""The training engine's settings, a config section (``train:``); light to import (no torch),
so the CLI reads its defaults from here."""

from __future__ import annotations

from typing import Literal

from camtrace.schema import Section, option


def _precisions() -> tuple[str, ...]:
    from camtrace.hardware import PRECISIONS  # torch: imported only when a value is checked

    return PRECISIONS


class TrainConfig(Section):
    """Hyper-parameters; defaults are Bondi 2017's (SGD, lr 0.015 halved every 10 epochs).
    In a config's ``train:`` section every key but ``seed`` (the experiment's)."""

    epochs: int = option(50, "training epochs", minimum=1)
    batch_size: int = option(128, "patches per step", minimum=1)
    lr: float = option(0.015, "learning rate", minimum=0)
    momentum: float = option(0.9, "SGD momentum", minimum=0)
    weight_decay: float = option(7.5e-3, "L2 weight decay", minimum=0)
    lr_step_epochs: int = option(10, "epochs between learning-rate steps", minimum=1)
    lr_gamma: float = option(0.5, "factor of each learning-rate step", minimum=0)
    optimizer: Literal["sgd", "adam"] = option("sgd", "sgd (the papers') or adam")
    seed: int = option(0, "seed of the initialisation and the batch order", minimum=0)
    precision: str = option("auto", "auto: bf16/fp16 where fast, else fp32", choices=_precisions)
    channels_last: bool = option(True, "channels-last memory format")
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    eval_batch_size: int = option(512, "patches per validation step", minimum=1)
    init: str | None = option(
        None, "fine-tune: start from a checkpoint or pretrained name (default: random)"
    )
