"""SpoC (Cozzolino et al. 2021): the many-model SimCam preset of its embedder, the fixed
residual layer, the three networks, the losses, embedder pretraining and generator training
(learns, resumes exactly, reads no detector), its checkpoints and the attack call. Tiny sizes:
the whole file runs in seconds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from camtrace.attacks import make_attack
from camtrace.attacks.generative import (
    EmbedderConfig,
    SpoCConfig,
    load_embedder,
    load_generator,
    spoc_training,
    train_embedder,
    train_generator,
    train_spoc,
)
from camtrace.attacks.generative.checkpoint import weights_digest
from camtrace.attacks.generative.spoc import (
    ResidualLayer,
    anchor,
    discriminator_loss,
    distance_loss,
    l1_distance,
    triplet_loss,
)
from camtrace.data.simcam import load_preset
from camtrace.data.simcam.draw import draw_models
from camtrace.errors import CamtraceError
from tiny_runs import untimed

pytestmark = pytest.mark.usefixtures("one_thread")

SIDE = 20  # the smallest patch the embedder takes (3 + 16 px, a multiple of 4)
TARGET = "Kairo_DX-50"


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


def test_fixed_layer_gives_rgb_and_third_derivatives() -> None:
    """On x(i, j) = i^3 + 2 j^3 (grey levels), the 3rd-order finite differences [-1, 3, -3, 1]
    are exactly 3! = 6 down the columns and 2 * 6 = 12 along the rows, for every colour."""
    i, j = torch.meshgrid(torch.arange(8.0), torch.arange(9.0), indexing="ij")
    x = (i**3 + 2 * j**3).expand(1, 3, 8, 9) / 8
    out = ResidualLayer()(x)
    assert out.shape == (1, 9, 5, 6) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, :3], x[..., 1:-2, 1:-2] / 127.5 - 1)
    torch.testing.assert_close(out[:, 3:6], torch.full((1, 3, 5, 6), 12 / 8))
    torch.testing.assert_close(out[:, 6:], torch.full((1, 3, 5, 6), 6 / 8))
    # an impulse of one grey level on 200 gives the taps (reversed: a correlation), in fp32
    # under autocast too
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ResidualLayer()(torch.full((1, 3, 8, 8), 200.0) + (torch.arange(8.0) == 4))
    assert y.dtype == torch.float32 and y[0, 3, 0].tolist() == [0.0, 1.0, -3.0, 3.0, -1.0]


def test_triplet_loss_on_a_toy_batch() -> None:
    """1-d embeddings 0, 2 (model a) and 3 (model b), margin 1.5: triplet (0, 2; 3) gives
    2 - 3 + 1.5 = 0.5 and (2, 0; 3) gives 2 - 1 + 1.5 = 2.5; both violate, mean 1.5."""
    e, labels = torch.tensor([[0.0], [2.0], [3.0]]), torch.tensor([0, 0, 1])
    assert triplet_loss(e, labels, 1.5).item() == pytest.approx(1.5)
    assert triplet_loss(torch.tensor([[0.0], [0.1], [9.0]]), labels, 1.0).item() == 0


def test_embedding_distance_is_the_mean_absolute_difference_per_dimension() -> None:
    """|1 - 0| + |-2 - 0| + |0.5 - 0.5| + |0 - 4| = 7 over 4 dimensions: 1.75, per row and
    broadcast over pairs; the anchor's spread d_ref is the same per-dimension mean."""
    a, b = torch.tensor([[1.0, -2.0, 0.5, 0.0]]), torch.tensor([0.0, 0.0, 0.5, 4.0])
    assert l1_distance(a, b).tolist() == [1.75]
    assert l1_distance(torch.stack([a[0], b])[:, None], torch.stack([a[0], b])[None]).tolist() == [
        [0.0, 1.75],
        [1.75, 0.0],
    ]
    e_m, d_ref = anchor(torch.stack([a[0], b]))  # e_M halfway: each row 1.75 / 2 from it
    assert e_m.tolist() == [0.5, -1.0, 0.5, 2.0] and d_ref.item() == 0.875


def test_distance_loss_is_a_hinge_at_d_ref_minus_the_margin() -> None:
    """L_DST's hinge on the per-dimension distance: d = 0.5 / 4 sits inside d_ref - m = 0.99,
    d = 8 / 4 = 2 outside (a sum over the 4 dimensions would put both outside)."""
    e_m, d_ref = torch.zeros(4), torch.tensor(1.0)
    inside = torch.tensor([[0.25, -0.25, 0.0, 0.0]], requires_grad=True)  # d = 0.125
    outside = torch.tensor([[2.0, 2.0, -2.0, 2.0]], requires_grad=True)  # d = 2
    loss = distance_loss(torch.cat([inside, outside]), e_m, d_ref)
    assert loss.item() == pytest.approx((2 - 1 + 0.01) / 2)
    loss.backward()
    assert (inside.grad == 0).all() and outside.grad.abs().sum() > 0
    at_margin = torch.full((1, 4), 0.99)  # d = d_ref - m: the hinge's corner
    assert distance_loss(at_margin, e_m, d_ref).item() == pytest.approx(0, abs=1e-6)
    beyond = torch.tensor([[3.96, 0.0, 0.0, 0.0]])  # sum 3.96, mean 0.99: inside as well
    assert distance_loss(beyond, e_m, d_ref).item() == pytest.approx(0, abs=1e-6)


def test_discriminator_loss_weights_real_against_both_synthetic_kinds() -> None:
    """D(real) = 0.75, D(G(x)) = 0.5, D(x) = 0.25: L_D = -log 0.75 - (log 0.5 + log 0.75) / 2."""
    real, spoof, inputs = (torch.full((2, 1, 3, 3), v) for v in (math.log(3), 0.0, -math.log(3)))
    expected = -math.log(0.75) - 0.5 * (math.log(0.5) + math.log(0.75))
    assert discriminator_loss(real, spoof, inputs).item() == pytest.approx(expected, rel=1e-6)


def _patches(n: int, seed: int, smooth: bool = False) -> np.ndarray:
    """Tiny uint8 patches: noisy ones (a camera's traces) or smooth ones (synthetic)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 200, (n, 1, 1, 3))
    noise = rng.normal(0, 1 if smooth else 6, (n, SIDE, SIDE, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> Path:
    """An embedder pre-trained for 3 iterations on three 'camera models'."""
    x = np.concatenate([_patches(6, s) for s in range(3)])
    models = [m for m in ("Manifold_M001", "Manifold_M002", "Manifold_M003") for _ in range(6)]
    config = EmbedderConfig(models_per_batch=3, patches_per_model=2, iterations=3)
    return train_embedder(x, models, config, tmp_path_factory.mktemp("embedder"))


def quick(**kw) -> SpoCConfig:
    return SpoCConfig(**{"batch_size": 2, "iterations": 4, "val_every": 2, "save_every": 2, **kw})


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Target-camera patches (R_M), inputs to spoof (S) and validation inputs."""
    return _patches(6, 10), _patches(6, 11, smooth=True), _patches(2, 12, smooth=True)


@pytest.fixture(scope="module")
def trained(embedder, data, tmp_path_factory) -> Path:
    return train_spoc(*data, embedder, TARGET, quick(), tmp_path_factory.mktemp("spoc"))


def test_embedder_checkpoint_loads_with_its_card(embedder) -> None:
    e = load_embedder(embedder)
    assert e.card["kind"] == "embedder" and e.card["iterations"] == 3
    assert e.card["storage"] == "float16"  # kept in 16 bits, widened on load
    assert all(p.dtype == torch.float32 for p in e.parameters())
    assert e.card["models"] == ["Manifold_M001", "Manifold_M002", "Manifold_M003"]
    assert e(torch.zeros(2, 3, SIDE, SIDE)).shape == (2, 512)
    assert not any(p.requires_grad for p in e.parameters())


def test_training_logs_every_loss_and_writes_a_spoc_card(trained, embedder, data) -> None:
    card = load_generator(trained).card
    assert card["method"] == "spoc" and card["target"] == TARGET and "classes" not in card
    assert card["embedder"] == weights_digest(load_embedder(embedder))
    assert card["iterations"] == 4 and card["d_ref"] > 0
    log = json.loads((trained.parent / "log.json").read_text())
    assert {"rec", "per", "discriminator", "adv", "dst", "fm", "generator"} <= set(log["losses"][0])
    assert [v["iteration"] for v in log["validation"]] == [2, 4]
    assert {"psnr", "distance", "within_d_ref"} <= set(log["validation"][0])


def test_generator_steps_lower_the_generator_loss(embedder, data) -> None:
    """Five updates on one batch lower L_G on that batch but for lambda_A L_ADV, which
    rises as D, updated on the same batch, learns it (L_REC falls fastest: the tanh
    output starts several grey levels from the input)."""
    real, synthetic, val = (torch.from_numpy(a).permute(0, 3, 1, 2) for a in data)
    config = quick()
    run = spoc_training._SpoCRun(
        config, real, synthetic, val, load_embedder(embedder), {"target": TARGET}, seed=0
    )
    x, z = synthetic[:2].float(), real[:2].float()
    logs = [run.step(x, z) for _ in range(5)]
    losses = [log["generator"] - config.lambda_a * log["adv"] for log in logs]
    assert losses[-1] < losses[0]


def test_a_bf16_step_computes_the_fp32_steps_losses(embedder, data) -> None:
    """The four networks in bf16 autocast (precision on any CPU, explicit here), the losses
    in fp32: one step's losses are the fp32 step's within bf16's precision (8 bits of
    mantissa through a few layers), and the run says which arithmetic it trains in."""
    real, synthetic, val = (torch.from_numpy(a).permute(0, 3, 1, 2) for a in data)
    x, z = synthetic[:2].float(), real[:2].float()
    logs = {}
    for precision in ("fp32", "bf16"):
        run = spoc_training._SpoCRun(
            quick(precision=precision), real, synthetic, val, load_embedder(embedder),
            {"target": TARGET}, seed=0,
        )  # fmt: skip
        assert run.precision == precision
        logs[precision] = run.step(x, z)
    for term in ("rec", "per", "discriminator", "adv", "dst", "fm"):
        assert logs["bf16"][term] == pytest.approx(logs["fp32"][term], rel=0.05, abs=1e-3), term


def test_discriminator_sees_real_spoofed_and_input_patches(embedder, data) -> None:
    real, synthetic, val = (torch.from_numpy(a).permute(0, 3, 1, 2) for a in data)
    run = spoc_training._SpoCRun(
        quick(), real, synthetic, val, load_embedder(embedder), {"target": TARGET}, seed=0
    )
    seen: list[torch.Tensor] = []
    d = run.modules["discriminator"]
    d.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    x, z = synthetic[:2].float(), real[:2].float()
    run.step(x, z)
    batch = seen[0]  # the discriminator's update: 3 x batch_size = SpoC's 30 for 10
    assert len(batch) == 6
    assert torch.equal(batch[:2], z) and torch.equal(batch[4:], x)
    assert not torch.equal(batch[2:4], x) and torch.equal(batch[2:4], batch[2:4].round())


def test_kill_and_resume_gives_the_uninterrupted_result(
    embedder, data, trained, tmp_path, monkeypatch
) -> None:
    class Killed(Exception):
        pass

    step = spoc_training._SpoCRun.step

    def dies(self, x, z):
        if self.iteration == 2:  # after the state of iteration 2 was saved
            raise Killed
        return step(self, x, z)

    monkeypatch.setattr(spoc_training._SpoCRun, "step", dies)
    with pytest.raises(Killed):
        train_spoc(*data, embedder, TARGET, quick(), tmp_path)
    monkeypatch.setattr(spoc_training._SpoCRun, "step", step)
    resumed = train_spoc(*data, embedder, TARGET, quick(), tmp_path)
    a, b = load_file(str(resumed)), load_file(str(trained))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert untimed(tmp_path / "log.json") == untimed(trained.parent / "log.json")
    assert train_spoc(*data, embedder, TARGET, quick(), tmp_path) == resumed
    with pytest.raises(CamtraceError, match="another target"):
        train_spoc(*data, embedder, "Nimbus_N300", quick(), tmp_path)


def test_training_reads_no_detector(embedder, data, tmp_path, monkeypatch) -> None:
    import camtrace.models.checkpoint as checkpoint
    import camtrace.models.registry as registry

    def forbidden(*args, **kwargs):
        raise AssertionError("SpoC read a detector")

    for module, name in ((checkpoint, "load_detector"), (registry, "build"), (checkpoint, "build")):
        monkeypatch.setattr(module, name, forbidden)
    monkeypatch.setattr(nn.Module, "__call__", _no_detector(nn.Module.__call__))
    config = quick(iterations=2, lambda_p=0)
    assert train_spoc(*data, embedder, TARGET, config, tmp_path).is_file()


def _no_detector(call):
    """nn.Module.__call__ that refuses any module with detector ``classes``."""

    def guarded(self, *args, **kwargs):
        if hasattr(self, "classes"):
            raise AssertionError(f"SpoC ran the detector {type(self).__name__}")
        return call(self, *args, **kwargs)

    return guarded


class Toy(nn.Module):
    """A detector of any input size whose classes include the target."""

    def __init__(self, classes: list[str]) -> None:
        super().__init__()
        self.classes = classes
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, len(classes))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / 255)


def test_attack_call_finds_the_target_among_the_detector_classes(trained, data) -> None:
    torch.manual_seed(0)
    detector = Toy(["Halden_H20", TARGET, "Nimbus_N300"]).eval()
    attack = make_attack("spoc", generator=trained)
    images = np.concatenate([data[1], data[1]], axis=2)  # wider than the training patch: tiles
    adv, info = attack(detector, images)
    assert adv.dtype == np.uint8 and adv.shape == images.shape
    assert (info.target == 1).all()
    with pytest.raises(CamtraceError, match="spoofs Kairo_DX-50 .class 1., not class 2"):
        attack(detector, images, target=2)
    with pytest.raises(CamtraceError, match="not one of the detector's classes"):
        attack(Toy(["Halden_H20", "Nimbus_N300"]), images)


def test_one_line_errors(embedder, trained, data, tmp_path) -> None:
    real, synthetic, val = data
    cases = [
        (
            lambda: train_spoc(
                real, synthetic, val, tmp_path / "none.safetensors", TARGET, quick(), tmp_path
            ),
            "embedder checkpoint not found",
        ),
        (
            lambda: train_spoc(real, synthetic, val, trained, TARGET, quick(), tmp_path),
            "not a SpoC embedder",
        ),
        (lambda: train_spoc(real, synthetic, val, None, TARGET, quick(), tmp_path), "no embedder"),
        (
            lambda: train_spoc(real[:0], synthetic, val, embedder, TARGET, quick(), tmp_path),
            "no images of the target camera model 'Kairo_DX-50'",
        ),
        (
            lambda: train_generator("spoc", Toy([TARGET]), synthetic, val, TARGET),
            "use camtrace.attacks.generative.train_spoc",
        ),
        (lambda: make_attack("mislgan", generator=trained), "a spoc generator, not mislgan"),
    ]
    for call, message in cases:
        with pytest.raises(CamtraceError, match=message) as e:
            call()
        assert "\n" not in str(e.value)
