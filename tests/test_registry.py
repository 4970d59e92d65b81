"""One registry style: a new attack is usable everywhere an attack name is (make_attack, the
configs' attack runs and the robustness matrix's columns) by registration alone, and every
registry refuses an unknown name in one line that lists the choices."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from camtrace.attacks import ATTACKS, Attack, make_attack, matrix_attacks
from camtrace.attacks.base import Goal, register_attack
from camtrace.attacks.generative import METHODS
from camtrace.attacks.precision import AttackModel
from camtrace.errors import CamtraceError
from camtrace.models.registry import ARCHITECTURES
from camtrace.registry import Registry
from camtrace.workflows.config import parse_config


class Brighten(Attack):
    """A toy attack: every value + eps, on the 8-bit grid."""

    name = "toy-brighten"
    needs_gradient = False
    inapplicable = {"precision": "no gradient"}

    def __init__(self, eps: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        self.eps = float(eps)

    def precision(self, detector: torch.nn.Module, x0: torch.Tensor) -> str:
        return "fp32"

    def run(
        self, model: AttackModel, x0: torch.Tensor, goal: Goal, aim: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return (x0 + self.eps).clamp(0, 255), torch.ones(len(x0), dtype=torch.long)


@pytest.fixture
def brighten() -> Iterator[None]:
    register_attack(Brighten)
    try:
        yield
    finally:
        ATTACKS.remove("toy-brighten")


def test_a_new_attack_is_usable_by_registration_alone(brighten) -> None:
    detector = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))
    x = torch.full((2, 3, 8, 8), 100, dtype=torch.uint8)
    adv, info = make_attack("toy-brighten", eps=2)(detector, x)
    assert torch.equal(adv, x + 2) and info.scores.shape == (2, 3)
    assert "toy-brighten" in matrix_attacks()
    config = parse_config(
        {
            "attacks": {"runs": [{"method": "toy-brighten", "eps": 2}]},
            "robustness": {"attacks": ["fgsm", "toy-brighten"]},
        }
    )
    assert config.robustness.attacks == ("fgsm", "toy-brighten")


def test_unknown_names_list_the_registered_ones(brighten) -> None:
    for registry, name in ((ATTACKS, "pgd"), (METHODS, "mislgan"), (ARCHITECTURES, "mislnet")):
        with pytest.raises(CamtraceError, match=rf"unknown {registry.kind} 'nope'; .*{name}"):
            registry.get("nope")
    with pytest.raises(CamtraceError, match="'toy-brighten' is registered twice"):
        register_attack(Brighten)


def test_the_matrix_columns_are_the_linf_attacks() -> None:
    assert "pgd-l2" not in matrix_attacks() and not set(METHODS) & set(matrix_attacks())
    assert {"fgsm", "pgd", "jsma", "square", "noise", "noise-luma"} <= set(matrix_attacks())


def test_a_registry_keeps_the_order_and_matches_names_in_any_case() -> None:
    things: Registry[int] = Registry("thing")
    things.add("b", 2)
    things.register("A")(1)
    assert things.names() == ("b", "a") and things["B"] == 2 and "a" in things
