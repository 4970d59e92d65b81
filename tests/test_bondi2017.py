"""Bondi 2017 network: shapes, parameter count, preprocessing."""

from __future__ import annotations

import torch

from camtrace.models import build
from camtrace.models.bondi2017 import INPUT_SCALE


def classes(n: int) -> list[str]:
    return [f"M{i}" for i in range(n)]


def test_feature_map_sizes_follow_caffe_ceil_pooling() -> None:
    net = build("bondi2017", classes(10))
    h = torch.zeros(1, 3, 64, 64)
    sizes = []
    for layer in net.body:
        h = layer(h)
        if h.ndim == 4:
            sizes.append(h.shape[-1])
    assert sizes == [61, 31, 27, 14, 10, 5, 1]
    assert [m.out_channels for m in net.body if isinstance(m, torch.nn.Conv2d)] == [32, 48, 64, 128]


def test_parameter_count_for_dresden_18_models() -> None:
    # The paper prints 340,462; the layer list it gives sums to 340,642 for N = 18
    # (conv 1568 + 38448 + 76864 + 204928, ip1 16512, ip2 2322): a digit transposition.
    net = build("bondi2017", classes(18))
    assert sum(p.numel() for p in net.parameters()) == 340_642


def test_embedding_is_128d_post_relu_and_logits_per_class() -> None:
    net = build("bondi2017", classes(5))
    x = torch.rand(4, 3, 64, 64) * 255
    e = net.embed(x)
    assert e.shape == (4, 128) and (e >= 0).all()
    assert net(x).shape == (4, 5)


def test_preprocessing_subtracts_training_mean_and_scales() -> None:
    net = build("bondi2017", classes(3))
    patches = torch.randint(0, 256, (10, 64, 64, 3), dtype=torch.uint8)
    net.fit_preprocessing(patches)
    mean = patches.permute(0, 3, 1, 2).double().mean(0).float()
    assert torch.allclose(net.mean, mean, atol=1e-4)
    x = patches[:2].permute(0, 3, 1, 2).float()
    assert torch.allclose(net.preprocess(x), (x - mean) * INPUT_SCALE, atol=1e-5)
