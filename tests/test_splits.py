"""Bondi 2017 and random splits, and the leak check, on small synthetic manifests."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import replace

import pytest

from camtrace.data.manifest import Manifest, Record
from camtrace.data.splits import bondi_split, check_leaks, random_split, split_summary
from camtrace.errors import CamtraceError

INSTANCES = {"Canon_Ixus70": ["0", "1", "2"], "Nikon_D70": ["0", "1", "D70s-0"]}


def _manifest(instances: dict[str, list[str]], n_scenes: int = 20, shots: int = 1) -> Manifest:
    """Every device shoots every scene ``shots`` times, like Dresden's acquisition."""
    records = [
        Record(f"{model}_{inst}_{s}_{k}.JPG", model.split("_")[0], model, inst, f"s{s:02d}", str(k))
        for model, insts in instances.items()
        for inst in insts
        for s in range(n_scenes)
        for k in range(shots)
    ]
    return Manifest(records, "/data")


def _scenes(m: Manifest, split: str) -> set[str]:
    return {r.scene for r in m if r.split == split}


def test_bondi_split_protocol() -> None:
    m = _manifest(INSTANCES)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = bondi_split(m, seed=3)
    assert [r.path for r in out] == [r.path for r in m]
    assert len(_scenes(out, "train")) == 14
    assert len(_scenes(out, "val")) == len(_scenes(out, "eval")) == 3
    assert not (_scenes(out, "train") | _scenes(out, "val")) & _scenes(out, "eval")
    assert not _scenes(out, "train") & _scenes(out, "val")
    eval_devices = {(r.model, r.instance) for r in out if r.split == "eval"}
    assert sorted(model for model, _ in eval_devices) == sorted(INSTANCES)
    scene_split = {r.scene: r.split for r in out if r.split != "unused"}
    for r in out:
        if (r.model, r.instance) in eval_devices:
            assert r.split == ("eval" if scene_split[r.scene] == "eval" else "unused")
        else:
            assert r.split == ("unused" if scene_split[r.scene] == "eval" else scene_split[r.scene])
    check_leaks(out, devices=True)


def test_bondi_split_is_deterministic_per_seed() -> None:
    m = _manifest(INSTANCES)
    a, b = bondi_split(m, seed=1), bondi_split(m, seed=1)
    assert a.digest() == b.digest()
    assert len({bondi_split(m, seed=s).digest() for s in range(5)}) > 1


def test_bondi_split_named_eval_instance() -> None:
    out = bondi_split(_manifest(INSTANCES), eval_instance="1")
    assert {r.device for r in out if r.split == "eval"} == {"Canon_Ixus70_1", "Nikon_D70_1"}
    with pytest.raises(CamtraceError, match="Nikon_D70 has no such instance"):
        bondi_split(_manifest(INSTANCES), eval_instance="2")


def test_bondi_split_single_instance_model_warns_or_raises() -> None:
    m = _manifest({**INSTANCES, "Sony_DSC-H50": ["1"]})
    with pytest.warns(UserWarning, match=r"single instance \(Sony_DSC-H50\)"):
        out = bondi_split(m, seed=0)
    sony = Counter(r.split for r in out if r.model == "Sony_DSC-H50")
    assert sony["eval"] == 0 and sony["train"] == 14 and sony["val"] == 3 and sony["unused"] == 3
    with pytest.raises(CamtraceError, match="multi-instance-only"):
        bondi_split(m, strict=True)


def test_bondi_split_refuses_missing_or_too_few_scenes() -> None:
    m = _manifest(INSTANCES)
    no_scene = m.with_records(replace(r, scene="") for r in m)
    with pytest.raises(CamtraceError, match="--scenes-csv.*--split random"):
        bondi_split(no_scene)
    with pytest.raises(CamtraceError, match="only 2 scenes"):
        bondi_split(_manifest(INSTANCES, n_scenes=2))


def test_random_split_is_stratified_per_model() -> None:
    m = _manifest({"A_x": ["0"], "B_y": ["0"], "C_z": ["0"]}, n_scenes=10, shots=2)
    m = m.with_records([*m, *[Record(f"d{i}.jpg", "D", "D_w", "0", "", str(i)) for i in range(3)]])
    out = random_split(m, seed=7)
    counts = split_summary(out)["models"]
    for model in ("A_x", "B_y", "C_z"):
        assert counts[model] == {"train": 14, "val": 3, "eval": 3}
    assert counts["D_w"] == {"train": 1, "val": 1, "eval": 1}
    assert random_split(m, seed=7).digest() == out.digest() != random_split(m, seed=8).digest()
    check_leaks(out, by=("image",))
    with pytest.raises(CamtraceError, match="summing to 1"):
        random_split(m, fractions=(0.5, 0.2, 0.2))


def test_check_leaks_refuses_each_kind_of_leak() -> None:
    clean = bondi_split(_manifest(INSTANCES), seed=0)
    train = next(r for r in clean if r.split == "train")
    eval_row = next(r for r in clean if r.split == "eval")

    scene_leak = clean.with_records([*clean, replace(train, path="x.jpg", split="eval")])
    with pytest.raises(CamtraceError, match=f"scene '{train.scene}' is in train and eval"):
        check_leaks(scene_leak)

    image_leak = clean.with_records([*clean, replace(eval_row, split="val")])
    with pytest.raises(CamtraceError, match=r"image '.*' is in val and eval \(1 images"):
        check_leaks(image_leak, by=("image",))

    device_leak = clean.with_records(
        [*clean, replace(train, model=eval_row.model, instance=eval_row.instance, path="y.jpg")]
    )
    check_leaks(device_leak)  # scenes and images are still disjoint
    with pytest.raises(CamtraceError, match=f"device '{eval_row.device}' is in eval"):
        check_leaks(device_leak, devices=True)

    unused_is_ignored = clean.with_records([*clean, replace(train, split="unused")])
    check_leaks(unused_is_ignored, devices=True)


def test_check_leaks_user_errors() -> None:
    split = random_split(_manifest(INSTANCES, n_scenes=4))
    no_scene = split.with_records(replace(r, scene="") for r in split)
    with pytest.raises(CamtraceError, match="--scenes-csv"):
        check_leaks(no_scene)
    check_leaks(no_scene, by=("image",))
    with pytest.raises(CamtraceError, match="split the manifest first"):
        check_leaks(_manifest(INSTANCES))
    with pytest.raises(CamtraceError, match="unknown"):
        check_leaks(split, by=("pixels",))


def test_split_summary_counts() -> None:
    out = bondi_split(_manifest(INSTANCES), seed=2)
    summary = split_summary(out)
    assert list(summary["images"]) == ["train", "val", "eval", "unused"]
    # 2 eval devices, 4 train/val devices; 14/3/3 scenes; one shot per device and scene
    assert summary["images"] == {"train": 4 * 14, "val": 4 * 3, "eval": 2 * 3,
                                 "unused": 2 * 17 + 4 * 3}  # fmt: skip
    assert summary["scenes"] == {"train": 14, "val": 3, "eval": 3, "unused": 20}
    assert summary["devices"]["eval"] == 2
    assert summary["models"]["Canon_Ixus70"] == {"train": 28, "val": 6, "eval": 3, "unused": 23}


def test_bondi_split_warns_when_a_model_gets_no_images_in_a_set() -> None:
    m = _manifest(INSTANCES)
    one_scene = _manifest({"Sony_DSC-H50": ["0", "1"]}, n_scenes=1)
    with pytest.warns(UserWarning, match="model/set pairs empty.*Sony_DSC-H50/"):
        bondi_split(m.with_records([*m, *one_scene]), seed=0)
