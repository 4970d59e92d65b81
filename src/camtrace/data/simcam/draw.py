"""Camera models drawn at random inside the parameter ranges a preset's models span: the many
models SpoC's embedder is trained on (Cozzolino et al. 2021 Sec. 5: 600 models; a preset's
``draw:`` section, e.g. ``presets/many.yaml``).

Each drawn model takes every continuous number (a float, or each float of a float tuple)
uniformly in [min, max] over the given models, and every discrete choice (CFA pattern,
demosaicing, PSF, resampling kernel, each JPEG field: quality, subsampling, table tweaks)
from the set of values they use, each field independently. Guess (SpoC only says "600 camera
models"): independent uniform draws give models that mix the given ones' traits, as real
makers mix shared parts, without copying any given model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel

Model = TypeVar("Model", bound=BaseModel)


def draw_models(models: Sequence[Model], count: int, seed: int, make: str) -> tuple[Model, ...]:
    """``count`` camera models drawn from the ranges of ``models`` with a
    generator seeded by ``seed``, named ``make`` / ``{make[0]}001``, ``{make[0]}002``, ..."""
    rng = np.random.default_rng(seed)
    return tuple(
        _draw(list(models), rng).model_copy(update={"make": make, "model": f"{make[0]}{i + 1:03d}"})
        for i in range(count)
    )


def _draw(values: list[Any], rng: np.random.Generator) -> Any:
    """One value in the span of ``values`` (all of one field): see the module docstring."""
    first = values[0]
    if isinstance(first, BaseModel):
        return first.model_copy(
            update={
                name: _draw([getattr(v, name) for v in values], rng)
                for name in type(first).model_fields
            }
        )
    if isinstance(first, float):
        return float(rng.uniform(min(values), max(values)))
    if isinstance(first, tuple) and first and all(isinstance(x, float) for x in first):
        return tuple(_draw([v[k] for v in values], rng) for k in range(len(first)))
    choices = list(dict.fromkeys(values))  # distinct, in first-seen order
    return choices[int(rng.integers(len(choices)))]
