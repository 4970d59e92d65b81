"""Patch store: round trip, determinism across workers, memmaps, skip-existing, bad files."""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camtrace.data import patch_store
from camtrace.data.codec import save_image
from camtrace.data.images import load_rgb
from camtrace.data.manifest import Manifest, Record
from camtrace.data.patch_store import PatchStore, SkippedImageWarning, build_patch_store
from camtrace.data.patches import PatchProtocol, extract_patches
from camtrace.errors import CamtraceError

PROTOCOL = PatchProtocol("guera", 16, 5, "random")  # small and rng-driven
MODELS = ("Canon_Ixus70", "Nikon_D70", "Sony_DSC-H50")  # Dresden-like names


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 236, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def dataset(tmp_path: Path) -> Manifest:
    """Nine good PNGs over three models and three splits, plus one 'unused' row."""
    records = []
    for i in range(10):
        name = f"img{i}.png"
        save_image(tmp_path / "data" / name, _texture(48 + 8 * (i % 3), 64, seed=i))
        split = "unused" if i == 9 else ("train", "val", "test")[i % 3]
        model = MODELS[i % 3] if i % 2 else MODELS[(i + 1) % 3]
        records.append(Record(name, model.split("_")[0], model, "0", f"s{i}", "", split))
    return Manifest(records, tmp_path / "data")


def _build(manifest: Manifest, out: Path, **kw) -> PatchStore:
    kw = {"protocol": PROTOCOL, "workers": 1, "shard_size": 7, "progress": False} | kw
    return build_patch_store(manifest, out, **kw)


def test_round_trip_equals_direct_extraction(dataset: Manifest, tmp_path: Path) -> None:
    store = _build(dataset, tmp_path / "store", seed=3)
    assert len(store) == 9 * 5 and store.patch_size == 16
    assert store.classes == sorted(MODELS)
    assert sorted(p.name for p in store.path.glob("shard-*.npy")) == [
        f"shard-{k:05d}.npy" for k in range(7)
    ]  # 45 patches in shards of 7: the last one holds 3
    assert np.load(store.path / "shard-00006.npy").shape == (3, 16, 16, 3)
    all_patches = store.patches()
    for row in range(9):
        rng = np.random.default_rng(np.random.SeedSequence([3, row]))
        image = load_rgb(dataset.abspath(dataset[row]))
        patches, pos, scores = extract_patches(image, PROTOCOL, rng)
        idx = np.flatnonzero(store.meta["source"] == dataset[row].path)
        assert np.array_equal(all_patches[idx], patches)
        assert np.array_equal(store.meta["y"][idx], pos[:, 0])
        assert np.array_equal(store.meta["x"][idx], pos[:, 1])
        assert np.array_equal(store.meta["quality"][idx], scores)
        assert set(store.meta["model"][idx]) == {dataset[row].model}
        assert set(store.meta["label"][idx]) == {store.classes.index(dataset[row].model)}
        assert set(store.meta["split"][idx]) == {dataset[row].split}
        assert set(store.meta["scene"][idx]) == {dataset[row].scene}
    assert "unused" not in set(store.meta["split"])
    assert store.summary["images"] == 9 and store.summary["patches"] == 45
    assert sum(store.summary["counts"]["train"].values()) == 15


def test_store_is_memory_mapped_and_gathers_any_order(dataset: Manifest, tmp_path: Path):
    built = _build(dataset, tmp_path / "store")
    store = PatchStore.open(tmp_path / "store")
    assert all(isinstance(s, np.memmap) and s.mode == "r" for s in store._shards)
    idx = np.array([44, 0, 7, 6, 13, 7])
    expected = np.stack([np.load(store.path / f"shard-{i // 7:05d}.npy")[i % 7] for i in idx])
    assert np.array_equal(store.patches(idx), expected)
    assert np.array_equal(built.patches(idx), expected)
    batches = list(store.iter_batches(idx, batch_size=4))
    assert [len(b) for b, _ in batches] == [4, 2]
    assert np.array_equal(np.concatenate([b for b, _ in batches]), expected)
    assert np.array_equal(np.concatenate([i for _, i in batches]), idx)


def test_indices_by_split_and_model(dataset: Manifest, tmp_path: Path) -> None:
    store = _build(dataset, tmp_path / "store")
    train = store.indices("train")
    assert len(train) == 15 and set(store.meta["split"][train]) == {"train"}
    canon = store.indices(models=["Canon_Ixus70"])
    assert set(store.meta["model"][canon]) == {"Canon_Ixus70"}
    both = store.indices("val", ["Nikon_D70", "Sony_DSC-H50"])
    assert np.array_equal(
        both, np.intersect1d(store.indices("val"), np.setdiff1d(np.arange(len(store)), canon))
    )
    with pytest.raises(CamtraceError, match="not in this patch store"):
        store.indices("unused")
    with pytest.raises(CamtraceError, match="not in this patch store"):
        store.indices(models=["Apple_iPhone"])


def test_same_store_for_any_worker_count(dataset: Manifest, tmp_path: Path) -> None:
    one = _build(dataset, tmp_path / "w1", seed=11, workers=1)
    two = _build(dataset, tmp_path / "w2", seed=11, workers=2)
    assert np.array_equal(one.patches(), two.patches())
    for column in one.meta:
        assert np.array_equal(one.meta[column], two.meta[column]), column
    other_seed = _build(dataset, tmp_path / "s12", seed=12)
    assert not np.array_equal(
        one.meta["y"] * 1000 + one.meta["x"], other_seed.meta["y"] * 1000 + other_seed.meta["x"]
    )


def test_rerun_skips_work_already_done(
    dataset: Manifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _build(dataset, tmp_path / "store", splits=["train", "val"])
    stamp = (tmp_path / "store" / "store.json").stat().st_mtime_ns

    def fail(job):
        raise AssertionError("recomputed a store that was already built")

    monkeypatch.setattr(patch_store, "_extract_job", fail)
    again = _build(dataset, tmp_path / "store", splits=["val", "train"])
    assert (tmp_path / "store" / "store.json").stat().st_mtime_ns == stamp
    assert np.array_equal(again.patches(), first.patches())
    monkeypatch.undo()
    changed = _build(dataset, tmp_path / "store", splits=["train"])
    assert set(changed.meta["split"]) == {"train"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_refuses_to_overwrite_a_folder_that_is_not_a_store(dataset: Manifest, tmp_path: Path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(CamtraceError, match="not a patch store"):
        _build(dataset, tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def _bomb_png(path: Path) -> None:
    """A PNG header claiming 30000 x 30000 pixels (a decompression bomb), no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def _awkward_files(folder: Path) -> tuple[dict[str, int], set[str]]:
    """Every awkward input kind; returns {usable file: expected height} and the bad names."""
    folder.mkdir()
    tex = _texture(40, 48, seed=0)
    Image.fromarray(tex[..., 0], mode="L").save(folder / "grey.png")
    Image.fromarray(np.dstack([tex, tex[..., :1]]), mode="RGBA").save(folder / "rgba.png")
    Image.fromarray(tex, mode="RGB").convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(tex[..., 0].astype(np.uint16) * 257).save(folder / "deep.png")
    Image.fromarray(tex, mode="RGB").quantize(16).save(folder / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    save_image(folder / "rotated.jpg", _texture(24, 64, seed=1), exif=exif.tobytes())
    save_image(folder / "whole.jpg", _texture(256, 256, seed=2), 90)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(2048))
    (folder / "empty.jpg").write_bytes(b"")
    save_image(folder / "tiny.png", _texture(10, 10, seed=3))
    _bomb_png(folder / "bomb.png")
    good = {
        "grey.png": 40,
        "rgba.png": 40,
        "cmyk.jpg": 40,
        "deep.png": 40,
        "palette.png": 40,
        "rotated.jpg": 64,
        "whole.jpg": 256,
    }
    bad = {"truncated.jpg", "noise.jpg", "empty.jpg", "tiny.png", "bomb.png", "missing.png"}
    return good, bad


def test_awkward_inputs_are_loaded_or_skipped_by_name(tmp_path: Path) -> None:
    good, bad = _awkward_files(tmp_path / "data")
    names = sorted(good) + sorted(bad)
    records = [Record(n, "M", f"M{i % 2}", "0", n, "", "train") for i, n in enumerate(names)]
    manifest = Manifest(records, tmp_path / "data")
    protocol = PatchProtocol("gan", 16, None, "all")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = build_patch_store(
            manifest, tmp_path / "store", protocol, workers=2, shard_size=50, progress=False
        )
    messages = [str(w.message) for w in caught if w.category is SkippedImageWarning]
    assert len(messages) == len(bad)
    for name in bad:
        assert sum(name in m for m in messages) == 1, name
    assert all("\n" not in m for m in messages)
    assert {s["path"] for s in store.summary["skipped"]} == bad
    assert store.summary["images"] == len(good)
    for name, height in good.items():
        idx = np.flatnonzero(store.meta["source"] == name)
        width = 48 if height == 40 else (24 if name == "rotated.jpg" else 256)
        assert len(idx) == (height // 16) * (width // 16), name
        image = load_rgb(tmp_path / "data" / name)
        assert image.shape[:2] == (height, width)
        for i in idx[:3]:
            y, x = store.meta["y"][i], store.meta["x"][i]
            assert np.array_equal(store.patches(np.array([i]))[0], image[y : y + 16, x : x + 16])
    info = json.loads((tmp_path / "store" / "store.json").read_text())
    assert len(info["summary"]["skipped"]) == len(bad)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_all_files_bad_raises_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "data" / "b.jpg").write_bytes(b"")
    manifest = Manifest(
        [Record(n, "M", "M", "0", split="train") for n in ("a.jpg", "b.jpg")], tmp_path / "data"
    )
    with pytest.warns(SkippedImageWarning), pytest.raises(CamtraceError, match="none of the 2"):
        _build(manifest, tmp_path / "store")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
