"""SpoC (Cozzolino et al. 2021): the many-model SimCam preset of its embedder, the fixed
residual layer, the three networks, the losses, embedder pretraining and generator training.
Tiny sizes: the whole file runs in seconds."""

from __future__ import annotations

import pytest

from camtrace.data.simcam import load_preset
from camtrace.data.simcam.draw import draw_models
from camtrace.errors import CamtraceError


def test_many_preset_draws_new_models_inside_default_ranges() -> None:
    many, default = load_preset("many"), load_preset("default")
    attacked = {c.label for name in ("default", "hard", "unseen") for c in load_preset(name).models}
    labels = [c.label for c in many.models]
    assert len(labels) == len(set(labels)) == 60 and not set(labels) & attacked
    for field in ("cfa", "demosaic"):
        assert {getattr(c, field) for c in many.models} <= {
            getattr(c, field) for c in default.models
        }
    blur = [c.optics.blur for c in default.models]
    assert all(min(blur) <= c.optics.blur <= max(blur) for c in many.models)
    qualities = {c.jpeg.quality for c in default.models}
    assert {c.jpeg.quality for c in many.models} <= qualities
    # seeded: the same seed gives the same models, another seed others
    again = draw_models(default.models, 60, 13, "Manifold")
    assert again == many.models
    assert draw_models(default.models, 60, 14, "Manifold") != many.models


def test_drawn_names_must_not_repeat_a_given_model(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: default\ndraw: {models: 2, seed: 0, make: Halden}\n")
    load_preset(bad)  # Halden_H001 is not a default model
    clash = tmp_path / "clash.yaml"
    clash.write_text(
        "extends: default\nmodels: [{make: Halden, model: H001}]\n"
        "draw: {models: 1, seed: 0, make: Halden}\n"
    )
    with pytest.raises(CamtraceError, match="draw.make: drawn names Halden_H001 repeat"):
        load_preset(clash)
