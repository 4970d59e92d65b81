"""Dataset adapters on tiny trees named like the real datasets."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from PIL import Image

from camtrace.data.layouts import LAYOUTS, index_dataset
from camtrace.data.manifest import Manifest
from camtrace.errors import CamtraceError


def _image(path: Path, make: str | None = None, model: str | None = None) -> Path:
    """A tiny image (format from the suffix), with EXIF Make/Model when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if make is not None:
        exif[0x010F] = make
    if model is not None:
        exif[0x0110] = model
    Image.new("RGB", (8, 8), (120, 60, 30)).save(path, exif=exif)
    return path


def _tree(root: Path, names: list[str]) -> Path:
    for name in names:
        _image(root / name)
    return root


def _by_path(manifest: Manifest) -> dict[str, tuple[str, str, str, str]]:
    return {r.path: (r.make, r.model, r.instance, r.shot) for r in manifest}


DRESDEN = [
    "Canon_Ixus70/Canon_Ixus70_0_3334.JPG",
    "Canon_Ixus70/Canon_Ixus70_1_3400.jpg",
    "Sony_DSC-H50_1_4815.JPG",
    "Nikon_D70s_0_19999.JPG",
    "Nikon_D70_1_20000.jpeg",
    "Olympus_mju_1050SW_0_24330.JPG",
]


def test_dresden_parses_names_merges_d70s_and_skips_strays(tmp_path: Path) -> None:
    root = _tree(tmp_path / "dresden", DRESDEN + ["holiday.JPG", "Canon_Ixus70_x_12.JPG"])
    (root / "readme.txt").write_text("not an image")
    _image(root / "._Canon_Ixus70_0_3334.JPG")  # macOS resource fork: hidden, ignored
    with pytest.warns(UserWarning, match=r"skipped 2 of 8 .*holiday\.JPG"):
        m = index_dataset(root, "dresden")
    assert _by_path(m) == {
        "Canon_Ixus70/Canon_Ixus70_0_3334.JPG": ("Canon", "Canon_Ixus70", "0", "3334"),
        "Canon_Ixus70/Canon_Ixus70_1_3400.jpg": ("Canon", "Canon_Ixus70", "1", "3400"),
        "Sony_DSC-H50_1_4815.JPG": ("Sony", "Sony_DSC-H50", "1", "4815"),
        "Nikon_D70s_0_19999.JPG": ("Nikon", "Nikon_D70", "D70s-0", "19999"),
        "Nikon_D70_1_20000.jpeg": ("Nikon", "Nikon_D70", "1", "20000"),
        "Olympus_mju_1050SW_0_24330.JPG": ("Olympus", "Olympus_mju_1050SW", "0", "24330"),
    }
    assert sorted(m.skipped) == ["Canon_Ixus70_x_12.JPG", "holiday.JPG"]
    assert m.root == root and all(r.scene == "" and r.split == "" for r in m)
    assert all(m.abspath(r).is_file() for r in m)


def test_dresden_multi_instance_only_keeps_bondi_selection(tmp_path: Path) -> None:
    root = _tree(tmp_path, DRESDEN)
    m = index_dataset(root, "dresden", multi_instance_only=True)
    assert m.models == ["Canon_Ixus70", "Nikon_D70"]
    assert {r.device for r in m} == {
        "Canon_Ixus70_0",
        "Canon_Ixus70_1",
        "Nikon_D70_1",
        "Nikon_D70_D70s-0",
    }
    single = _tree(tmp_path / "single", ["Sony_DSC-H50_1_4815.JPG"])
    with pytest.raises(CamtraceError, match="more than one instance"):
        index_dataset(single, "dresden", multi_instance_only=True)


def test_vision_devices_are_instances_and_videos_are_ignored(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        [
            "D05_Apple_iPhone5c/images/nat/D05_I_nat_0001.jpg",
            "D14_Apple_iPhone5c/images/flat/D14_I_flat_0001.jpg",
            "D01_Samsung_GalaxyS3Mini/images/natWA/D01_I_natWA_0001.jpg",
            "D01_Samsung_GalaxyS3Mini/videos/flat/D01_V_flat_0001.jpg",
        ],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = index_dataset(root, "vision")
    assert _by_path(m) == {
        "D01_Samsung_GalaxyS3Mini/images/natWA/D01_I_natWA_0001.jpg": (
            "Samsung", "Samsung_GalaxyS3Mini", "D01", "D01_I_natWA_0001"),
        "D05_Apple_iPhone5c/images/nat/D05_I_nat_0001.jpg": (
            "Apple", "Apple_iPhone5c", "D05", "D05_I_nat_0001"),
        "D14_Apple_iPhone5c/images/flat/D14_I_flat_0001.jpg": (
            "Apple", "Apple_iPhone5c", "D14", "D14_I_flat_0001"),
    }  # fmt: skip


def test_kaggle2018_reads_train_folders_only(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        [
            "train/HTC-1-M7/(HTC-1-M7)1.jpg",
            "train/iPhone-4s/(iP4s)7.JPG",
            "train/LG-Nexus-5x/(LG5x)3.png",
            "test/img_0002a04_manip.tif",
        ],
    )
    m = index_dataset(root, "kaggle2018")
    assert _by_path(m) == {
        "train/HTC-1-M7/(HTC-1-M7)1.jpg": ("HTC", "HTC-1-M7", "0", "(HTC-1-M7)1"),
        "train/LG-Nexus-5x/(LG5x)3.png": ("LG", "LG-Nexus-5x", "0", "(LG5x)3"),
        "train/iPhone-4s/(iP4s)7.JPG": ("iPhone", "iPhone-4s", "0", "(iP4s)7"),
    }


def test_folders_model_and_optional_instance_level(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        ["Canon_EOS-5D/a.jpg", "Sony-A7/cam1/b.png", "Sony-A7/cam2/day1/c.tif", "stray.jpg"],
    )
    with pytest.warns(UserWarning, match="stray.jpg"):
        m = index_dataset(root, "folders")
    assert _by_path(m) == {
        "Canon_EOS-5D/a.jpg": ("Canon", "Canon_EOS-5D", "0", "a"),
        "Sony-A7/cam1/b.png": ("Sony", "Sony-A7", "cam1", "b"),
        "Sony-A7/cam2/day1/c.tif": ("Sony", "Sony-A7", "cam2", "c"),
    }
    assert m.skipped == ["stray.jpg"]


def test_exif_make_model_normalised_and_missing_skipped(tmp_path: Path) -> None:
    _image(tmp_path / "x/a.jpg", "Canon", "Canon PowerShot A640")
    _image(tmp_path / "x/y/b.JPG", "NIKON CORPORATION", "NIKON  D70s ")
    _image(tmp_path / "c.jpg", None, "iPhone 5c")
    _image(tmp_path / "no_exif.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match=r"skipped 2 of 5 .*no EXIF Model"):
        m = index_dataset(tmp_path, "exif")
    assert _by_path(m) == {
        "c.jpg": ("iPhone", "iPhone-5c", "0", "c"),
        "x/a.jpg": ("Canon", "Canon_PowerShot-A640", "0", "a"),
        "x/y/b.JPG": ("NIKON-CORPORATION", "NIKON-CORPORATION_D70s", "0", "b"),
    }
    assert sorted(m.skipped) == ["broken.jpg", "no_exif.jpg"]


def test_scenes_csv_by_basename_and_relative_path(tmp_path: Path) -> None:
    root = _tree(tmp_path / "d", DRESDEN)
    csv = tmp_path / "scenes.csv"
    csv.write_text(
        "file,scene,comment\n"
        "Canon_Ixus70_0_3334.JPG,office_left,x\n"
        "Canon_Ixus70/Canon_Ixus70_1_3400.jpg,office_right,\n"
        ".\\Sony_DSC-H50_1_4815.JPG,square_1,\n"
        "Nikon_D70s_0_19999.JPG,square_1,\n"
        "Nikon_D70_1_20000.jpeg,park_2,\n"
        "Olympus_mju_1050SW_0_24330.JPG,park_2,\n"
    )
    m = index_dataset(root, "dresden", scenes_csv=csv)
    assert {Path(r.path).name: r.scene for r in m} == {
        "Canon_Ixus70_0_3334.JPG": "office_left",
        "Canon_Ixus70_1_3400.jpg": "office_right",
        "Sony_DSC-H50_1_4815.JPG": "square_1",
        "Nikon_D70s_0_19999.JPG": "square_1",
        "Nikon_D70_1_20000.jpeg": "park_2",
        "Olympus_mju_1050SW_0_24330.JPG": "park_2",
    }
    csv.write_text("file,scene\nCanon_Ixus70_0_3334.JPG,office_left\n")
    with pytest.warns(UserWarning, match="5 of 6 images have no scene"):
        m = index_dataset(root, "dresden", scenes_csv=csv)
    assert sum(r.scene != "" for r in m) == 1


def test_scenes_csv_errors(tmp_path: Path) -> None:
    root = _tree(tmp_path / "f", ["camA/1/img.jpg", "camA/2/img.jpg"])
    csv = tmp_path / "scenes.csv"
    csv.write_text("filename,scene\nimg.jpg,s1\n")
    with pytest.raises(CamtraceError, match="lacks column.* file"):
        index_dataset(root, "folders", scenes_csv=csv)
    csv.write_text("file,scene\nimg.jpg,s1\n")
    with pytest.raises(CamtraceError, match="matches 2 images"):
        index_dataset(root, "folders", scenes_csv=csv)
    csv.write_text("file,scene\nother.jpg,s1\n")
    with pytest.raises(CamtraceError, match="no row matches"):
        index_dataset(root, "folders", scenes_csv=csv)
    csv.write_text("file,scene\ncamA/1/img.jpg,s1\ncamA/2/img.jpg,s2\n")
    assert [r.scene for r in index_dataset(root, "folders", scenes_csv=csv)] == ["s1", "s2"]
    with pytest.raises(CamtraceError, match="scenes CSV not found"):
        index_dataset(root, "folders", scenes_csv=tmp_path / "nope.csv")


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _tree(tmp_path / "wrong", ["IMG_0001.JPG"])
    cases = [
        (lambda: index_dataset(tmp_path, "flickr"), "unknown layout 'flickr'"),
        (lambda: index_dataset(tmp_path / "missing", "dresden"), "folder not found"),
        (lambda: index_dataset(tmp_path / "empty", "dresden"), "no image files"),
        (lambda: index_dataset(tmp_path / "wrong", "dresden"), "none of 1 image files"),
    ]
    for call, message in cases:
        with pytest.raises(CamtraceError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
    assert len(LAYOUTS) == 5


def test_indexed_manifest_round_trips(tmp_path: Path) -> None:
    m = index_dataset(_tree(tmp_path / "data", DRESDEN), "dresden")
    loaded = Manifest.load(m.save(tmp_path / "out"))
    assert [loaded.abspath(r).resolve() for r in loaded] == [m.abspath(r).resolve() for r in m]
    assert [r.model for r in loaded] == [r.model for r in m]
