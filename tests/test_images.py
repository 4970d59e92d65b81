"""load_rgb on real files of every awkward kind, written in tmp_path."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camtrace.data.codec import Jpeg, save_image
from camtrace.data.images import load_rgb, to_uint8
from camtrace.errors import CamtraceError


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(30, 220, (h, w, 3), dtype=np.uint8)


def png_bomb_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels but holds no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    grey = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    rgb = load_rgb(tmp_path / "g.png")
    assert rgb.shape == (12, 16, 3) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[..., c], grey) for c in range(3))


def test_rgba_drops_alpha_without_compositing(tmp_path: Path) -> None:
    rgba = np.dstack([_texture(8, 8), np.zeros((8, 8), np.uint8)])  # fully transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    assert np.array_equal(load_rgb(tmp_path / "a.png"), rgba[..., :3])


def test_palette_png_maps_through_palette(tmp_path: Path) -> None:
    im = Image.new("P", (4, 2))
    im.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    im.putdata([0, 1, 0, 1, 1, 1, 0, 0])
    im.save(tmp_path / "p.png")
    rgb = load_rgb(tmp_path / "p.png")
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[0, 1].tolist() == [200, 100, 50]


def test_16bit_png_is_shifted_not_clipped(tmp_path: Path) -> None:
    a = np.array([[0, 255, 256, 40000, 65535]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode == "I;16"
    rgb = load_rgb(tmp_path / "d.png")
    assert rgb[0, :, 0].tolist() == [0, 0, 1, 156, 255]


def test_to_uint8_rules() -> None:
    assert to_uint8(np.array([0.0, 0.5, 1.0], np.float32)).tolist() == [0, 128, 255]
    assert to_uint8(np.array([-10, 0, 10], np.int32)).tolist() == [0, 128, 255]
    assert to_uint8(np.array([0, 1 << 20], np.int32)).tolist() == [0, 255]


def test_cmyk_jpeg_loads_as_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 8), (0, 0, 0, 0)).save(tmp_path / "c.jpg", quality=95)
    rgb = load_rgb(tmp_path / "c.jpg")
    assert rgb.shape == (8, 16, 3)
    assert rgb.min() > 240  # no ink = white


def test_exif_orientation_6_swaps_dimensions(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:24, 0:40]
    rgb = np.dstack([xx * 6, yy * 10, np.full_like(xx, 128)]).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    save_image(tmp_path / "r.jpg", rgb, Jpeg(quality=95, subsampling="4:4:4"), exif=exif.tobytes())
    loaded = load_rgb(tmp_path / "r.jpg").astype(int)
    assert loaded.shape == (40, 24, 3)
    # Orientation 6: the stored picture is rotated 90 degrees clockwise for display.
    assert np.abs(loaded - np.rot90(rgb, k=-1)).mean() < 3
    assert np.abs(loaded - np.rot90(rgb, k=1)).mean() > 30


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("empty.jpg", b"", "not a readable image"),
        ("noise.jpg", np.random.default_rng(1).bytes(3000), "not a readable image"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path: Path, name: str, content: bytes, needle: str):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(CamtraceError, match=needle) as err:
        load_rgb(tmp_path / name)
    assert name in str(err.value) and "\n" not in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CamtraceError, match="no such file"):
        load_rgb(tmp_path / "nope.png")


def test_truncated_jpeg_is_an_error_not_grey_pixels(tmp_path: Path) -> None:
    save_image(tmp_path / "t.jpg", _texture(256, 256), 90)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(CamtraceError, match="t.jpg: corrupt or truncated"):
        load_rgb(tmp_path / "t.jpg")


def test_too_small_for_a_patch(tmp_path: Path) -> None:
    save_image(tmp_path / "s.png", _texture(30, 20))
    with pytest.raises(CamtraceError, match="image is 20x30, smaller than a 64x64 patch"):
        load_rgb(tmp_path / "s.png", min_size=64)
    assert load_rgb(tmp_path / "s.png", min_size=20).shape == (30, 20, 3)


def test_bombs_are_refused_before_decoding(tmp_path: Path) -> None:
    save_image(tmp_path / "b.png", _texture(40, 40))
    with pytest.raises(CamtraceError, match="more than max_pixels=1000"):
        load_rgb(tmp_path / "b.png", max_pixels=1000)
    # Header claims 900 M pixels: beyond Pillow's own limit, caught at open.
    with pytest.raises(CamtraceError, match="bomb"):
        load_rgb(png_bomb_header(tmp_path / "huge.png", 30000, 30000))
    # 144 M pixels: within Pillow's hard limit, refused by max_pixels from the header alone.
    with pytest.raises(CamtraceError, match="more than max_pixels=100000000"):
        load_rgb(png_bomb_header(tmp_path / "big.png", 12000, 12000))
