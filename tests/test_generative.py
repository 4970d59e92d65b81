"""Generative attacks (MISLGAN, Adv-Cam-Id, GAP): the re-mosaic, the discriminator's
constraint, training that learns and resumes exactly, checkpoints and their refusals, the
GAP budget on uint8, and the common attack call."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from camtrace.attacks import AttackInfo, make_attack
from camtrace.attacks.generative import (
    GAPGenerator,
    GeneratorConfig,
    MISLGANGenerator,
    SyntheticCFA,
    load_generator,
    train_generator,
)
from camtrace.attacks.generative.checkpoint import save_generator
from camtrace.attacks.generative.mislgan import bayer_mask
from camtrace.errors import CamtraceError
from camtrace.models import build, save_detector
from tiny_runs import untimed

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["Agfa_DC-504", "Canon_Ixus70", "Nikon_D70"]
SIZE = 40  # the smallest multiple of 4 the MISLnet discriminator takes (35 px)


class Toy(nn.Module):
    """A small detector of any input size (global pooling), with the detector's ``classes``."""

    def __init__(self, classes: list[str] = CLASSES) -> None:
        super().__init__()
        self.classes = list(classes)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, len(classes)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 127.5) / 64)


@pytest.fixture(scope="module")
def toy() -> Toy:
    torch.manual_seed(0)
    return Toy().eval()


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (
        rng.integers(0, 256, (12, SIZE, SIZE, 3), dtype=np.uint8),
        rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8),
    )


def quick(**changes) -> GeneratorConfig:
    return GeneratorConfig(
        **{"batch_size": 4, "iterations": 4, "val_every": 2, "save_every": 1, **changes}
    )


@pytest.fixture(scope="module")
def trained(toy, data, tmp_path_factory) -> dict[str, str]:
    """A 4-iteration generator per method, toward Canon_Ixus70."""
    root = tmp_path_factory.mktemp("gen")
    return {
        m: str(train_generator(m, toy, *data, "Canon_Ixus70", quick(), root / m))
        for m in ("mislgan", "advcamid", "gap")
    }


def test_cfa_keeps_one_sample_per_pixel_in_the_bayer_pattern() -> None:
    x = torch.rand(2, 3, 6, 8) * 255 + 1  # no zero value, so every kept sample is non-zero
    y = SyntheticCFA("RGGB")(x)
    kept = y != 0
    assert (kept.sum(1) == 1).all()
    torch.testing.assert_close(y[kept], x[kept], rtol=0, atol=0)
    assert kept[:, 0, 0::2, 0::2].all() and kept[:, 2, 1::2, 1::2].all()
    assert kept[:, 1, 0::2, 1::2].all() and kept[:, 1, 1::2, 0::2].all()
    torch.testing.assert_close(bayer_mask(6, 8, "RGGB").sum(0), torch.ones(6, 8))


def test_remosaic_erases_the_input_demosaicing() -> None:
    """Two images that differ only at the values the pattern does not sample (where a camera's
    demosaicing wrote its interpolation) give the very same generator output."""
    torch.manual_seed(0)
    g = MISLGANGenerator().eval()
    a = torch.randint(0, 256, (2, 3, 16, 16)).float()
    unsampled = bayer_mask(16, 16) == 0
    b = torch.where(unsampled, torch.randint(0, 256, a.shape).float(), a)
    assert (a != b).any()
    with torch.no_grad():
        torch.testing.assert_close(g(a), g(b), rtol=0, atol=0)


def test_training_lowers_the_loss_and_keeps_the_constraint(toy, data, trained) -> None:
    out = load_generator(trained["mislgan"]).card
    log = json.loads((_folder(trained["mislgan"]) / "log.json").read_text())
    losses = [step["generator"] for step in log["losses"]]
    assert len(losses) == out["iterations"] == 4
    assert losses[-1] < losses[0]
    assert {"l1", "ce", "adversarial", "discriminator"} <= set(log["losses"][0])
    assert [v["iteration"] for v in log["validation"]] == [2, 4]
    # the discriminator's constrained layer after 4 optimiser steps (Bayar-Stamm Eq. 2)
    state = load_file(str(_folder(trained["mislgan"]) / "train_state.safetensors"))
    w = state["model.discriminator.net.constrained.weight"].flatten(2)
    centre = w.shape[-1] // 2
    assert (w[..., centre] == -1).all()
    off = w.sum(-1) - w[..., centre]
    torch.testing.assert_close(off, torch.ones_like(off), rtol=0, atol=1e-5)


def test_kill_and_resume_gives_the_uninterrupted_result(toy, data, trained, tmp_path) -> None:
    class Killed(Exception):
        pass

    class Dies(nn.Module):
        """The toy detector, killed at its 4th forward pass: iteration 3, after the state of
        iteration 2 (whose validation made the 3rd) was saved."""

        def __init__(self) -> None:
            super().__init__()
            self.inner, self.calls, self.classes = toy, 0, toy.classes

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls == 4:
                raise Killed
            return self.inner(x)

    dying = Dies()
    with pytest.raises(Killed):
        train_generator("mislgan", dying, *data, "Canon_Ixus70", quick(), tmp_path)
    assert json.loads((tmp_path / "log.json").read_text())["losses"][-1]["iteration"] == 2
    resumed = train_generator("mislgan", dying, *data, "Canon_Ixus70", quick(), tmp_path)
    a, b = load_file(str(resumed)), load_file(trained["mislgan"])
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert untimed(tmp_path / "log.json") == untimed(_folder(trained["mislgan"]) / "log.json")
    # a finished run is not trained again; another target in the same folder is refused
    assert train_generator("mislgan", dying, *data, "Canon_Ixus70", quick(), tmp_path) == resumed
    with pytest.raises(CamtraceError, match="another target"):
        train_generator("mislgan", dying, *data, "Nikon_D70", quick(), tmp_path)


def test_an_unfinished_training_resumes_under_a_new_budget(
    toy, data, tmp_path, monkeypatch
) -> None:
    """A state saved at iteration 2 of a 4-iteration budget, resumed with a budget of 3,
    trains one more iteration from where it was (the first two iterations' losses kept);
    any other change of settings is another training."""
    from camtrace.attacks.generative import training

    step = training._Run.step

    def dies(self, *batch):
        if self.iteration == 2:  # after iteration 2's state was saved (save_every 1)
            raise KeyboardInterrupt
        return step(self, *batch)

    with monkeypatch.context() as m:
        m.setattr(training._Run, "step", dies)
        with pytest.raises(KeyboardInterrupt):
            train_generator("mislgan", toy, *data, "Canon_Ixus70", quick(), tmp_path)
    before = json.loads((tmp_path / "log.json").read_text())["losses"]
    path = train_generator("mislgan", toy, *data, "Canon_Ixus70", quick(iterations=3), tmp_path)
    after = json.loads((tmp_path / "log.json").read_text())["losses"]
    assert [x["iteration"] for x in after] == [1, 2, 3] and after[:2] == before
    assert load_generator(path).card["iterations"] == 3
    with pytest.raises(CamtraceError, match="another config"):
        train_generator("mislgan", toy, *data, "Canon_Ixus70", quick(batch_size=2), tmp_path)


def test_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(1)
    g = GAPGenerator(eps=4).eval()
    card = {"method": "gap", "hparams": g.hparams, "classes": CLASSES, "target_index": 1}
    path = save_generator(g, tmp_path / "g.safetensors", card)
    back = load_generator(path, method="gap", classes=CLASSES)
    x = torch.randint(0, 256, (2, 3, 16, 16)).float()
    with torch.no_grad():
        torch.testing.assert_close(back(x), g(x), rtol=0, atol=0)
    assert back.card["kind"] == "generator" and back.eps == 4


def test_float16_storage_halves_the_file_and_is_widened_on_load(tmp_path) -> None:
    """Weights stored in float16 (the zoo's GAP) come back as float32 equal to torch's own
    float16 rounding of the originals; the uint8 spoofs differ from the float32 generator's
    by at most one grey level, on a few pixels."""
    torch.manual_seed(1)
    g = GAPGenerator(eps=8).eval()
    card = {"method": "gap", "hparams": g.hparams, "classes": CLASSES, "target_index": 1}
    full = save_generator(g, tmp_path / "full.safetensors", card)
    half = save_generator(g, tmp_path / "half.safetensors", card, storage="float16")
    assert 0.49 < half.stat().st_size / full.stat().st_size < 0.51
    back = load_generator(half, method="gap", classes=CLASSES)
    assert back.card["storage"] == "float16"
    for (name, w), (_, b) in zip(g.state_dict().items(), back.state_dict().items(), strict=True):
        assert b.dtype == w.dtype, name
        if w.is_floating_point():
            torch.testing.assert_close(b, w.half().float(), rtol=0, atol=0)
    x = torch.randint(0, 256, (4, 3, 32, 32)).float()
    with torch.no_grad():
        diff = (back(x).round() - g(x).round()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.02
    with pytest.raises(CamtraceError, match="storage='int8'"):
        save_generator(g, tmp_path / "x.safetensors", card, storage="int8")


def test_bad_checkpoints_give_one_line_errors(trained, tmp_path) -> None:
    detector = save_detector(build("mislnet", CLASSES, SIZE), tmp_path / "det.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    cases = [
        (lambda: load_generator(tmp_path / "none.safetensors"), "not found"),
        (lambda: load_generator(corrupt), "not a readable safetensors"),
        (lambda: load_generator(detector), "detector checkpoint, not a generator"),
        (lambda: make_attack("gap", generator=trained["mislgan"]), "mislgan generator, not gap"),
        (lambda: load_generator(trained["gap"], classes=CLASSES[::-1]), "train a generator"),
    ]
    for call, message in cases:
        with pytest.raises(CamtraceError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


def test_gap_output_stays_in_the_eps_ball_on_uint8(toy, trained) -> None:
    x = np.random.default_rng(3).integers(0, 256, (3, 24, 28, 3), dtype=np.uint8)
    for eps in (8.0, 2.5):
        g = load_generator(trained["gap"])
        g.eps = eps
        adv, info = make_attack("gap", generator=g)(toy, x)
        diff = np.abs(adv.astype(int) - x.astype(int))
        assert diff.max() <= eps and info.linf.max().item() <= eps
    assert diff.max() == 2  # at 2.5 the scaled perturbation exceeds 2.5: rounded inside


def test_attack_call_follows_the_contract(toy, trained) -> None:
    x = torch.randint(0, 256, (5, 3, SIZE, SIZE), dtype=torch.uint8)
    for method, path in trained.items():
        attack = make_attack(method, generator=path, batch_size=2)
        adv, info = attack(toy, x)
        assert adv.dtype == torch.uint8 and adv.shape == x.shape
        assert isinstance(info, AttackInfo) and info.targeted
        assert (info.target == 1).all() and (info.steps == 1).all()
        with torch.no_grad():
            pred = toy(adv.float()).argmax(1)
        torch.testing.assert_close(info.success, pred == 1)
        same, _ = attack(toy, x, target=1)
        torch.testing.assert_close(same, adv, rtol=0, atol=0)
    with pytest.raises(CamtraceError, match="spoofs Canon_Ixus70"):
        attack(toy, x, target=2)
    with pytest.raises(CamtraceError, match="train a generator against this detector"):
        attack(Toy(["a", "b", "c"]), x)
    with pytest.raises(CamtraceError, match="give generator="):
        make_attack("mislgan")
    with pytest.raises(CamtraceError, match="early_stop"):
        make_attack("gap", generator=trained["gap"], early_stop=False)


def test_large_images_are_attacked_as_in_one_pass_without_seams(toy, trained) -> None:
    """A 3x3-tile image: inside the image (a halo from its edge) every pixel is the
    generator's output on the whole image at once, so no tile border shows; any size works."""
    g = load_generator(trained["advcamid"])
    x = torch.randint(0, 256, (1, 3, 3 * SIZE, 3 * SIZE), dtype=torch.uint8)
    adv, _ = make_attack("advcamid", generator=g)(toy, x)
    with torch.no_grad():
        whole = g.to_grid(g(x.float()), x.float())
    m = g.halo
    inner = (..., slice(m, 3 * SIZE - m), slice(m, 3 * SIZE - m))
    assert (adv[inner].float() - whole[inner]).abs().max() <= 1  # float sums may flip a rounding
    assert (adv[inner].float() != whole[inner]).float().mean() < 1e-3
    odd = torch.randint(0, 256, (1, 3, SIZE + 6, SIZE + 2), dtype=torch.uint8)
    assert make_attack("advcamid", generator=g)(toy, odd)[0].shape == odd.shape


def test_a_large_image_gets_one_gap_budget_not_one_per_tile(toy, trained) -> None:
    """GAP scales its perturbation per image (Poursaeed 2018): a 6x6-tile image is scaled
    once, so inside it (a halo from its edge) the perturbation is one multiple of the
    whole-image pass's in each channel, not a different one per tile (a seam). Checked
    before rounding, where a per-tile scale cannot hide."""
    g = load_generator(trained["gap"])
    g.eps = 1.0  # below the raw perturbation's maxima (3-4 grey levels here): the budget bites
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(20, 236, (1, 3, 6 * SIZE, 6 * SIZE), generator=gen).float()
    x[..., :, 3 * SIZE :] = 128  # tiles of unlike content: unlike raw perturbation maxima
    attack = make_attack("gap", generator=g, patch_size=SIZE)  # 36 tiles
    with torch.no_grad():
        ours, one_pass = attack._generate(x) - x, g(x) - x
    m, n = g.halo, 6 * SIZE
    inner = (0, slice(None), slice(m, n - m), slice(m, n - m))
    for c in range(3):
        a, b = ours[inner][c].flatten(), one_pass[inner][c].flatten()
        k = (a * b).sum() / (b * b).sum()  # least-squares scale between the two
        assert (a - k * b).abs().max() <= 1e-3 * b.abs().max(), c
    assert ours.abs().max() <= g.eps + 1e-4


def _folder(path: str):
    from pathlib import Path

    return Path(path).parent


def test_validation_ssim_is_wangs_as_scikit_image_computes_it() -> None:
    """The validation SSIM (kornia) against scikit-image's Gaussian-window SSIM (Wang 2004)."""
    from skimage.metrics import structural_similarity

    from camtrace.attacks.generative.training import ssim

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    ours = ssim(*(torch.from_numpy(v).permute(0, 3, 1, 2).float() for v in (a, b)))
    for k in range(2):
        ref = structural_similarity(
            a[k],
            b[k],
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )
        assert ours[k].item() == pytest.approx(ref, abs=1e-4)


def test_training_stops_at_its_time_budget(toy, data, tmp_path) -> None:
    """max_hours: the training stops (validated and saved) once it has spent the budget of
    CPU time, long before its iteration cap; the card records the wall and CPU times."""
    from camtrace.attacks.generative.checkpoint import read_generator_card

    config = quick(iterations=1000, val_every=500, max_hours=1e-9)
    path = train_generator("advcamid", toy, *data, "Canon_Ixus70", config, tmp_path / "g")
    card = read_generator_card(path)
    assert card["iterations"] == 1 and card["validation"]["iteration"] == 1
    assert {"psnr", "ssim", "sar", "seconds", "cpu_seconds"} <= set(card["validation"])
    assert card["training_seconds"] >= 0 and card["training_cpu_seconds"] >= 0


def test_a_trained_generator_is_found_by_name_and_checked(trained, tmp_path, monkeypatch) -> None:
    """A bare generator name works wherever a generator path does, after its sha256 check."""
    import shutil

    from camtrace.models import zoo as zoo_module
    from camtrace.models.zoo import GeneratorWeights, sha256_of

    name = "advcamid-Canon_Ixus70"
    shutil.copy(trained["advcamid"], tmp_path / f"{name}.safetensors")
    sha = sha256_of(trained["advcamid"])
    (tmp_path / f"{name}.sha256").write_text(f"{sha}  {name}.safetensors\n")
    entry = GeneratorWeights(name, f"{name}.safetensors", 0, sha, False, method="advcamid")
    monkeypatch.setenv(zoo_module.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(zoo_module, "generator_zoo", lambda: {name: entry})
    g = load_generator(name)
    assert g.card["target"] == "Canon_Ixus70"
    assert make_attack("advcamid", generator=name).card == g.card
    (tmp_path / f"{name}.sha256").write_text(f"{'0' * 64}  {name}.safetensors\n")
    with pytest.raises(CamtraceError, match="sha256 differs"):
        load_generator(name)
    with pytest.raises(CamtraceError, match="no such checkpoint file and no trained generator"):
        load_generator("mislgan-Nowhere")


def test_a_read_only_photo_array_is_spoofed_without_a_warning() -> None:
    """A photo read as ``np.asarray(PIL.Image)`` is read-only; spoofing it neither warns nor
    writes into it."""
    import warnings

    from camtrace.attacks.generative.methods import get_method

    image = np.random.default_rng(0).integers(0, 256, (72, 80, 3), dtype=np.uint8)
    image.setflags(write=False)
    before = image.copy()
    attack = make_attack("mislgan", generator=get_method("mislgan").build().eval(), patch_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = attack.spoof_image(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, before)


@pytest.mark.parametrize(("method", "patch"), [("mislgan", 64), ("gap", 64), ("gap", 40)])
def test_a_cards_tile_spans_four_halos_so_its_border_costs_at_most_2_25x(
    method: str, patch: int
) -> None:
    """A generator's default tile is whole training patches; its haloed pixels are at most
    (1 + 2/4)^2 of the tile's (GAP: 9x at its 64 px patch), and one patch fewer would not do."""
    from camtrace.attacks.generative.methods import get_method

    generator = get_method(method).build()
    generator.card = {"method": method, "patch_size": patch, "target": "a", "classes": ["a"]}
    tile, m = make_attack(method, generator=generator).patch_size, generator.halo
    assert tile % patch == 0 and (tile + 2 * m) ** 2 <= 2.25 * tile**2
    assert tile == patch or (tile - patch + 2 * m) ** 2 > 2.25 * (tile - patch) ** 2


@pytest.mark.parametrize(
    ("method", "tile"), [("mislgan", 64), ("gap", 64), ("gap", 256), ("spoc", 64)]
)
def test_a_whole_image_is_one_generator_pass_away_from_its_edge(method: str, tile: int) -> None:
    """Issue 23, no seam: tiles of 64 px (GAP: also the 256 px its card's 64 px patch gets by
    default) with the generator's receptive-field border give, beyond that border from the
    image's own edge, exactly the pixels of one pass of the generator over the whole image
    (random weights; GAP's tiles stay aligned to its two stride-2 stages)."""
    from skimage import data

    from camtrace.attacks.generative.methods import get_method

    torch.manual_seed(0)
    image = data.coffee()[:320, :576].astype(np.uint8)  # 2 x 3 tiles of 256 px
    generator = get_method(method).build().eval()
    attack = make_attack(method, generator=generator, patch_size=tile)
    tiled = attack.spoof_image(image)
    with torch.no_grad():
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
        one_pass = attack.to_grid(generator(x), x)[0].permute(1, 2, 0).numpy()
    m = generator.halo
    differ = np.abs(tiled.astype(float) - one_pass)[m:-m, m:-m]
    assert differ.max() <= 1 and (differ > 0).mean() < 1e-3  # float summation order only
