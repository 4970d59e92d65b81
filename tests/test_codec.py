"""The one codec: exact lossless round trips, JPEG settings that read back from the file
(IJG tables for a quality, given tables and subsampling as given), the in-memory round trip
equal to the file read back, atomic writes, and one-line errors for bad arguments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from camtrace.data.codec import (
    EXIF_MAKE,
    EXIF_MODEL,
    SUBSAMPLING,
    Jpeg,
    as_jpeg,
    camera_exif,
    decode,
    encode,
    ijg_tables,
    recompress,
    save_image,
    stored,
)
from camtrace.data.images import load_rgb
from camtrace.errors import CamtraceError

# JPEG Annex K, Tables K.1 (luminance) and K.2 (chrominance), natural (row-major) order
ANNEX_K_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
ANNEX_K_CHROMA = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(30, 220, (h, w, 3), dtype=np.uint8)


def _ijg_scaled(table: tuple[tuple[int, ...], ...], quality: int) -> tuple[int, ...]:
    """libjpeg's jpeg_quality_scaling and baseline clipping (jcparam.c), written out."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return tuple(min(max((v * scale + 50) // 100, 1), 255) for row in table for v in row)


def _sampling(path: Path) -> str:
    with Image.open(path) as im:
        code = JpegImagePlugin.get_sampling(im)
    return next(name for name, c in SUBSAMPLING.items() if c == code)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_lossless_round_trip_is_exact(tmp_path: Path, suffix: str) -> None:
    rgb = _texture(20, 30)
    out = save_image(tmp_path / f"a{suffix}", rgb)
    assert out == tmp_path / f"a{suffix}"
    assert np.array_equal(load_rgb(out), rgb)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left
    assert np.array_equal(decode(encode(rgb)), rgb) and stored(rgb, None) is rgb


@pytest.mark.parametrize("quality", [10, 50, 75, 95, 100])
def test_quality_gives_libjpegs_scaled_annex_k_tables(tmp_path: Path, quality: int) -> None:
    out = save_image(tmp_path / "q.jpg", _texture(16, 16), quality)
    expected = (_ijg_scaled(ANNEX_K_LUMA, quality), _ijg_scaled(ANNEX_K_CHROMA, quality))
    with Image.open(out) as im:
        assert (tuple(im.quantization[0]), tuple(im.quantization[1])) == expected
    assert ijg_tables(quality) == expected
    assert Jpeg.from_file(out) == Jpeg(qtables=expected, subsampling="4:2:0")


def test_a_jpg_without_a_setting_is_quality_95(tmp_path: Path) -> None:
    out = save_image(tmp_path / "d.JPG", _texture(16, 16))
    assert Jpeg.from_file(out).qtables == ijg_tables(95)


@pytest.mark.parametrize("subsampling", list(SUBSAMPLING))
def test_given_tables_and_subsampling_read_back(tmp_path: Path, subsampling: str) -> None:
    luma, chroma = tuple(range(2, 66)), tuple(range(70, 134))
    jpeg = Jpeg(qtables=(luma, chroma), subsampling=subsampling)
    out = save_image(tmp_path / "t.jpg", _texture(32, 48), jpeg)
    with Image.open(out) as im:
        assert [tuple(t) for t in im.quantization.values()] == [luma, chroma]
    assert _sampling(out) == subsampling
    assert Jpeg.from_file(out) == jpeg
    assert Jpeg.from_file(out, subsampling="4:4:4").subsampling == "4:4:4"


def test_unit_tables_leave_only_colour_and_dct_rounding(tmp_path: Path) -> None:
    rgb = _texture(64, 64)
    ones = Jpeg(qtables=((1,) * 64, (1,) * 64), subsampling="4:4:4")
    err = np.abs(stored(rgb, ones).astype(int) - rgb)
    assert err.max() <= 5 and err.mean() < 1
    assert len(encode(rgb, Jpeg(quality=95))) > len(encode(rgb, Jpeg(quality=20)))


def test_stored_is_what_a_reader_gets_back_from_the_file(tmp_path: Path) -> None:
    rgb = _texture(40, 56, seed=3)
    jpeg = Jpeg(quality=80, subsampling="4:2:2")
    in_memory = stored(rgb, jpeg)
    assert np.array_equal(load_rgb(save_image(tmp_path / "s.jpg", rgb, jpeg)), in_memory)
    assert np.abs(in_memory.astype(int) - rgb).mean() > 1  # JPEG really changed it


def test_recompress_batches_numpy_tensors_and_grey() -> None:
    batch = np.stack([_texture(16, 24, seed=s) for s in range(3)])
    jpeg = Jpeg(quality=60)
    out = recompress(batch, jpeg)
    assert out.shape == batch.shape and out.dtype == np.uint8
    assert all(np.array_equal(o, stored(x, jpeg)) for o, x in zip(out, batch))
    tensor = jpeg(torch.from_numpy(batch).permute(0, 3, 1, 2))
    assert tensor.dtype == torch.uint8 and np.array_equal(tensor.permute(0, 2, 3, 1).numpy(), out)
    grey = recompress(batch[..., :1].copy(), jpeg)
    assert grey.shape == (3, 16, 24, 1)
    assert np.array_equal(grey[1, ..., 0], stored(batch[1, ..., 0].copy(), jpeg))


def test_camera_exif_make_and_model_are_written(tmp_path: Path) -> None:
    out = save_image(tmp_path / "c.jpg", _texture(16, 16), 90, exif=camera_exif("Kairo", "DX-50"))
    with Image.open(out) as im:
        exif = im.getexif()
    assert (exif[EXIF_MAKE], exif[EXIF_MODEL]) == ("Kairo", "DX-50")


def test_a_failing_encode_leaves_no_file_and_keeps_an_existing_one(tmp_path: Path) -> None:
    too_long = b"Exif\x00\x00" + bytes(70_000)  # JPEG's APP1 marker holds at most 64 KiB
    with pytest.raises(CamtraceError, match="new.jpg: cannot encode as JPEG") as err:
        save_image(tmp_path / "new.jpg", _texture(16, 16), exif=too_long)
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []
    old = save_image(tmp_path / "old.jpg", _texture(16, 16))
    before = old.read_bytes()
    with pytest.raises(CamtraceError, match="cannot encode"):
        save_image(old, _texture(16, 16, seed=1), exif=too_long)
    assert old.read_bytes() == before and list(tmp_path.iterdir()) == [old]


def test_a_failing_write_keeps_the_existing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = save_image(tmp_path / "old.png", _texture(16, 16))
    before = old.read_bytes()

    def half_then_disk_full(self: Path, data: bytes) -> int:
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_disk_full)
    with pytest.raises(CamtraceError, match="No space left on device"):
        save_image(old, _texture(16, 16, seed=1))
    assert old.read_bytes() == before and list(tmp_path.iterdir()) == [old]


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    rgb = _texture(8, 8)
    (tmp_path / "file").write_text("not a folder")
    png = save_image(tmp_path / "p.png", rgb)
    cases = [
        (lambda: save_image(tmp_path / "x.gif", rgb), "x.gif: unknown image suffix '.gif'"),
        (lambda: save_image(tmp_path / "x.png", rgb, 90), "x.png: JPEG settings given"),
        (lambda: save_image(tmp_path / "file" / "x.png", rgb), "is not a folder"),
        (lambda: save_image(tmp_path / "x.jpg", rgb, 150), "quality=150 is outside 1-100"),
        (lambda: save_image(tmp_path / "x.png", rgb.astype(np.float32)), "float32, not uint8"),
        (lambda: save_image(tmp_path / "x.png", rgb[..., :2]), "shape (8, 8, 2)"),
        (lambda: encode([[0]]), "image: image array is list"),
        (lambda: Jpeg(), "exactly one of quality= or qtables="),
        (lambda: Jpeg(quality=90, qtables=((1,) * 64,)), "exactly one of"),
        (lambda: Jpeg(qtables=((1,) * 63,)), "64 integers in 1-255"),
        (lambda: Jpeg(qtables=((0,) * 64,)), "64 integers in 1-255"),
        (lambda: Jpeg(quality=90, subsampling="4:1:1"), "subsampling '4:1:1' unknown"),
        (lambda: as_jpeg("high"), "jpeg='high': give a quality"),
        (lambda: as_jpeg(True), "jpeg=True"),
        (lambda: Jpeg.from_file(png), "p.png: not a JPEG file"),
        (lambda: Jpeg.from_file(tmp_path / "none.jpg"), "none.jpg: cannot read"),
        (lambda: recompress(rgb[None].astype(np.int16), Jpeg(quality=90)), "uint8 (N, H, W"),
    ]
    for call, message in cases:
        with pytest.raises(CamtraceError) as err:
            call()
        assert message in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "p.png"]
