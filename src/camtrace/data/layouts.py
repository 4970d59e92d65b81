"""Index a user's copy of a real dataset into a :class:`~camtrace.data.manifest.Manifest`.

Layouts:

- ``dresden``: ``Brand_Model_instance_shot.JPG`` (Dresden Image Database, Gloe & Boehme 2010),
  in any sub-folder. Nikon D70s is merged into Nikon D70 as in Bondi et al. 2017, Sec. III-A
  (after Kirchner & Gloe); the merged devices keep distinct instance ids (``D70s-0``).
- ``vision``: ``Dxx_Brand_Model/images/<type>/Dxx_I_<type>_0001.jpg`` (VISION, Shullani et
  al. 2017); one device per ``Dxx``, which becomes the instance; ``videos/`` is ignored.
- ``kaggle2018``: ``train/<model>/*`` (IEEE SP Cup 2018 / Kaggle camera model
  identification); one device per model; the unlabelled ``test/`` folder is ignored.
- ``folders``: ``<model>/**/*`` or ``<model>/<instance>/**/*``.
- ``exif``: any tree; the model is the EXIF ``Make_Model`` (tags 0x010F/0x0110).

Paths are stored relative to ``root``. Hidden files and folders (``.name``) and files that
are not images are ignored; image files that do not fit the layout are skipped: one summary
``warnings.warn`` names the first few, and the returned manifest carries the full list as
``manifest.skipped`` (root-relative paths; not kept by later ``filter``/``with_records``).
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from PIL import Image
from rich.progress import track

from camtrace.data.manifest import Manifest, Record
from camtrace.errors import CamtraceError

LAYOUTS = ("dresden", "vision", "kaggle2018", "folders", "exif")
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff"})
JPEG_EXTS = frozenset({".jpg", ".jpeg"})
# Bondi 2017 Sec. III-A (after Kirchner & Gloe): Nikon D70 and D70s count as one model.
MERGED_MODELS = {"Nikon_D70s": "Nikon_D70"}
EXIF_MAKE, EXIF_MODEL = 0x010F, 0x0110
_SHOWN_SKIPS = 5

_DRESDEN_STEM = re.compile(r"(?P<model>[^_]+_.+)_(?P<instance>\d+)_(?P<shot>\d+)")
_VISION_DEVICE = re.compile(r"(?P<id>D\d+)_(?P<model>[^_]+_.+)")


class _Unmatched(ValueError):
    """A file that does not follow the layout's naming convention (message = reason)."""


@dataclass(frozen=True)
class _Layout:
    parse: Callable[[PurePosixPath, Path], Record]
    convention: str
    exts: frozenset[str] = IMAGE_EXTS
    ignored_dirs: frozenset[str] = frozenset()


def _make_of(model: str, separators: str = "_") -> str:
    """The brand: the text of ``model`` before its first separator."""
    return re.split(f"[{re.escape(separators)}]", model, maxsplit=1)[0]


def _parse_dresden(rel: PurePosixPath, path: Path) -> Record:
    """``Brand_Model_instance_shot`` = ``stem.rsplit('_', 2)`` with numeric instance/shot."""
    m = _DRESDEN_STEM.fullmatch(rel.stem)
    if m is None:
        raise _Unmatched("name is not Brand_Model_instance_shot")
    model, instance = m["model"], m["instance"]
    if model in MERGED_MODELS:
        instance = f"{model.split('_', 1)[1]}-{instance}"
        model = MERGED_MODELS[model]
    return Record(rel.as_posix(), _make_of(model), model, instance, shot=m["shot"])


def _parse_vision(rel: PurePosixPath, path: Path) -> Record:
    """Model = ``Brand_Model`` of the ``Dxx_Brand_Model`` folder, instance = ``Dxx``."""
    for part in rel.parts[:-1]:
        m = _VISION_DEVICE.fullmatch(part)
        if m is not None:
            model = m["model"]
            return Record(rel.as_posix(), _make_of(model), model, m["id"], shot=rel.stem)
    raise _Unmatched("not inside a Dxx_Brand_Model folder")


def _parse_kaggle(rel: PurePosixPath, path: Path) -> Record:
    """``train/<model>/<file>``; make = text before the first ``-``; a single device."""
    if len(rel.parts) != 3 or rel.parts[0] != "train":
        raise _Unmatched("not train/<model>/<file>")
    model = rel.parts[1]
    return Record(rel.as_posix(), _make_of(model, "-"), model, "0", shot=rel.stem)


def _parse_folders(rel: PurePosixPath, path: Path) -> Record:
    """``<model>/<file>`` (instance "0") or ``<model>/<instance>/.../<file>``."""
    parts = rel.parts
    if len(parts) < 2:
        raise _Unmatched("not inside a <model> folder")
    instance = parts[1] if len(parts) > 2 else "0"
    return Record(rel.as_posix(), _make_of(parts[0], "_- "), parts[0], instance, shot=rel.stem)


def _exif_text(value: object) -> str:
    """An EXIF ASCII value, stripped, with runs of spaces (and NULs) turned into one ``-``."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore")
    return "-".join(str(value or "").replace("\x00", " ").split())


def _exif_model(make: str, model: str) -> str:
    """``Make_Model``, dropping the brand when the Model tag repeats it (``Canon Canon X``)."""
    brand = make.split("-")[0]
    if brand and model.lower().startswith(brand.lower() + "-"):
        model = model[len(brand) + 1 :]
    return f"{make}_{model}" if make else model


@dataclass(frozen=True)
class ExifCamera:
    """The camera a photo's EXIF names: its Make and Model tags and the model label the
    ``exif`` layout gives it (``Make_Model``)."""

    make: str
    model: str
    label: str


def read_exif_camera(path: str | Path) -> ExifCamera | None:
    """The EXIF Make (0x010F) and Model (0x0110) of ``path``, read with Pillow; None when the
    Model tag is absent. An unreadable file is a one-line :class:`CamtraceError`."""
    try:
        with Image.open(path) as im:
            exif = im.getexif()
    except (OSError, SyntaxError) as e:  # Pillow's UnidentifiedImageError is an OSError
        raise CamtraceError(f"{path}: unreadable image ({e}); no EXIF to read") from None
    make, model = _exif_text(exif.get(EXIF_MAKE)), _exif_text(exif.get(EXIF_MODEL))
    return ExifCamera(make, model, _exif_model(make, model)) if model else None


def _parse_exif(rel: PurePosixPath, path: Path) -> Record:
    """Model from the EXIF Make and Model tags (:func:`read_exif_camera`)."""
    try:
        camera = read_exif_camera(path)
    except CamtraceError as e:
        raise _Unmatched(str(e).removeprefix(f"{path}: ")) from None
    if camera is None:
        raise _Unmatched("no EXIF Model tag")
    make = camera.make or _make_of(camera.model, "-")
    return Record(rel.as_posix(), make, camera.label, "0", shot=rel.stem)


_LAYOUTS: dict[str, _Layout] = {
    "dresden": _Layout(_parse_dresden, "Brand_Model_instance_shot.JPG", JPEG_EXTS),
    "vision": _Layout(
        _parse_vision, "Dxx_Brand_Model/images/<type>/<file>", ignored_dirs=frozenset({"videos"})
    ),
    "kaggle2018": _Layout(_parse_kaggle, "train/<model>/<file>", ignored_dirs=frozenset({"test"})),
    "folders": _Layout(_parse_folders, "<model>/[<instance>/]<file>"),
    "exif": _Layout(_parse_exif, "images with EXIF Make/Model tags"),
}


def _layout(name: str) -> _Layout:
    if name not in _LAYOUTS:
        raise CamtraceError(f"unknown layout '{name}'; use one of: {', '.join(LAYOUTS)}")
    return _LAYOUTS[name]


def _image_files(root: Path, layout: _Layout) -> list[PurePosixPath]:
    """Root-relative image files, sorted; hidden entries and ignored folders are pruned."""
    if not root.is_dir():
        raise CamtraceError(f"{root}: dataset folder not found; pass the folder holding the images")
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [
            d for d in dirnames if not d.startswith(".") and d not in layout.ignored_dirs
        ]
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in layout.exts:
                found.append(PurePosixPath(Path(dirpath, name).relative_to(root).as_posix()))
    if not found:
        exts = "/".join(sorted(layout.exts))
        raise CamtraceError(f"{root}: no image files ({exts}) found; point the root at the dataset")
    return sorted(found)


def _parse_all(
    files: list[PurePosixPath], root: Path, layout: _Layout, progress: bool
) -> tuple[list[Record], dict[str, str]]:
    """Records of the files that fit ``layout``, and ``{path: reason}`` of those that don't."""
    records, skipped = [], {}
    for rel in track(files, description="indexing", disable=not progress):
        try:
            records.append(layout.parse(rel, root / rel))
        except _Unmatched as e:
            skipped[rel.as_posix()] = str(e)
    return records, skipped


def _warn_skipped(root: Path, name: str, skipped: dict[str, str], total: int) -> None:
    shown = "; ".join(f"{p} ({why})" for p, why in list(skipped.items())[:_SHOWN_SKIPS])
    more = f"; and {len(skipped) - _SHOWN_SKIPS} more" if len(skipped) > _SHOWN_SKIPS else ""
    warnings.warn(
        f"{root}: skipped {len(skipped)} of {total} image files that do not fit the "
        f"{name} layout: {shown}{more}",
        stacklevel=3,
    )


def _multi_instance(records: list[Record], root: Path) -> list[Record]:
    """Only models shot by more than one device (Bondi 2017's selection of Dresden)."""
    instances = defaultdict(set)
    for r in records:
        instances[r.model].add(r.instance)
    kept = [r for r in records if len(instances[r.model]) > 1]
    if not kept:
        raise CamtraceError(
            f"{root}: no camera model has more than one instance; drop --multi-instance-only"
        )
    return kept


def read_scenes_csv(path: str | Path) -> dict[str, str]:
    """``{file: scene}`` from a CSV with columns ``file,scene`` (file: basename or rel. path)."""
    path = Path(path)
    if not path.is_file():
        raise CamtraceError(f"{path}: scenes CSV not found; pass a CSV with columns file,scene")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = {"file", "scene"} - set(reader.fieldnames or ())
        if missing:
            raise CamtraceError(
                f"{path}: scenes CSV lacks column(s) {', '.join(sorted(missing))}; its header "
                "must be 'file,scene' (file = image basename or path relative to the root)"
            )
        return {
            PurePosixPath(row["file"].strip().replace("\\", "/")).as_posix(): row["scene"].strip()
            for row in reader
        }


def _with_scenes(records: list[Record], scenes: dict[str, str], csv_path: Path) -> list[Record]:
    """Fill ``scene`` from the CSV, matching a row by relative path first, then by basename."""
    basenames = Counter(PurePosixPath(r.path).name for r in records)
    out, missing = [], 0
    for r in records:
        name = PurePosixPath(r.path).name
        scene = scenes.get(r.path)
        if scene is None and name in scenes:
            if basenames[name] > 1:
                raise CamtraceError(
                    f"{csv_path}: row '{name}' matches {basenames[name]} images; "
                    "name files by their path relative to the dataset root"
                )
            scene = scenes[name]
        missing += scene is None
        out.append(replace(r, scene=scene or ""))
    if missing == len(records):
        raise CamtraceError(
            f"{csv_path}: no row matches an indexed image; 'file' must be the image basename "
            "or its path relative to the dataset root"
        )
    if missing:
        warnings.warn(
            f"{csv_path}: {missing} of {len(records)} images have no scene row; their scene "
            "stays empty and scene-disjoint splits will refuse them",
            stacklevel=3,
        )
    return out


def index_dataset(
    root: str | Path,
    layout: str,
    scenes_csv: str | Path | None = None,
    multi_instance_only: bool = False,
    progress: bool = False,
) -> Manifest:
    """Index the images under ``root`` named by ``layout`` into a manifest (split empty).

    Image files that do not fit the layout are skipped with one summary warning and listed
    in ``manifest.skipped``. ``multi_instance_only`` keeps models with more than one device
    (Bondi 2017, Sec. III-A). ``scenes_csv`` (columns ``file,scene``) fills the scene ids.
    """
    spec = _layout(layout)
    root = Path(root)
    files = _image_files(root, spec)
    records, skipped = _parse_all(files, root, spec, progress)
    if not records:
        first = next(iter(skipped))
        raise CamtraceError(
            f"{root}: none of {len(files)} image files follows the {layout} layout "
            f"({spec.convention}), e.g. '{first}'; pick the right --layout"
        )
    if skipped:
        _warn_skipped(root, layout, skipped, len(files))
    if multi_instance_only:
        records = _multi_instance(records, root)
    if scenes_csv is not None:
        records = _with_scenes(records, read_scenes_csv(scenes_csv), Path(scenes_csv))
    manifest = Manifest(records, root)
    manifest.skipped = list(skipped)
    return manifest
