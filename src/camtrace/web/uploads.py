"""Uploads, kept safe: each file is stored under a random name in the server's temporary
folder (removed when the server stops), its type is found from its content (never from its
name), a zip is extracted entry by entry to random names after every entry is checked (no
absolute path, no ``..``, no link, bounded sizes). No string from the browser is ever part
of a server path; it is only shown back, as the photo's name.
"""

from __future__ import annotations

import re
import secrets
import shutil
import stat
import tempfile
import threading
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from PIL import Image

from camtrace.data.images import DECODE_ERRORS
from camtrace.errors import CamtraceError
from camtrace.workflows.examine import MAX_PIXELS

PHOTO_FORMATS = ("JPEG", "PNG", "TIFF", "MPO")  # and HEIF where a Pillow plugin reads it
MEDIA_TYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png"}
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty archive
CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one request may bring: its body in bytes, the photos' pixels (Pillow's
    decompression-bomb guard, checked on the header), a zip's entries and unpacked bytes,
    and how many photos the server keeps (the oldest go first)."""

    request_bytes: int = 512 << 20
    max_pixels: int = MAX_PIXELS
    zip_entries: int = 2000
    zip_bytes: int = 2 << 30
    photos: int = 500


class UploadTooLarge(Exception):
    """A request body over :attr:`Limits.request_bytes` (the page shows it as one line)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"upload over the server's limit of {limit / 2**20:.0f} MB; send fewer or smaller "
            "files, or zip a folder and use Batch"
        )


def heif_support() -> bool:
    """Let Pillow read HEIC/HEIF when the ``pillow-heif`` plugin is installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def photo_formats() -> tuple[str, ...]:
    """The photo formats this server accepts: :data:`PHOTO_FORMATS`, and HEIF when Pillow
    has a reader for it."""
    Image.init()
    return PHOTO_FORMATS + (("HEIF",) if "HEIF" in Image.OPEN else ())


def sniff(path: Path, name: str) -> str:
    """The file's kind from its first bytes: ``zip``, or the Pillow photo format; anything
    else is a one-line :class:`CamtraceError` naming ``name``."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head in ZIP_MAGIC:
        return "zip"
    formats = photo_formats()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=None) as im:
                kind = str(im.format)
    except Image.DecompressionBombError:
        raise CamtraceError(f"{name}: decompression bomb (too many pixels); refused") from None
    except DECODE_ERRORS:
        kind = ""
    if kind not in formats:
        what = f"a {kind} image" if kind else "not an image"
        raise CamtraceError(
            f"{name}: {what}; camtrace reads {', '.join(formats)} photos (or a zip in Batch)"
        )
    return kind


def display_name(name: str | None) -> str:
    """The browser's file name, as shown back: printable, at most 200 characters."""
    text = re.sub(r"[\x00-\x1f\x7f]", "", name or "").strip()
    return (text or "unnamed")[-200:]


@dataclass(frozen=True)
class Photo:
    """One uploaded photo: a random ``id``, the ``name`` it came with (shown, never used in a
    path), its folder (the upload and everything made from it) and its format."""

    id: str
    name: str
    folder: Path
    format: str

    @property
    def path(self) -> Path:
        return self.folder / "upload"


class Store:
    """The server's uploads under one temporary folder: photos by id, batches' files."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._tmp = tempfile.TemporaryDirectory(prefix="camtrace-web-")
        self.root = Path(self._tmp.name)
        self._photos: OrderedDict[str, Photo] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Remove every upload and everything made from them."""
        self._tmp.cleanup()

    def folder(self) -> tuple[str, Path]:
        """A new random id and its empty folder."""
        token = secrets.token_hex(12)
        folder = self.root / token
        folder.mkdir()
        return token, folder

    def receive(self, source: BinaryIO, name: str) -> tuple[str, Path, str]:
        """Copy ``source`` into a new folder as ``upload``; its id, folder and sniffed kind.
        A file that is neither a photo nor a zip is removed and refused in one line."""
        token, folder = self.folder()
        with open(folder / "upload", "wb") as out:
            shutil.copyfileobj(source, out, CHUNK)
        try:
            return token, folder, sniff(folder / "upload", name)
        except CamtraceError:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def add_photo(self, source: BinaryIO, name: str | None) -> Photo:
        """Store an uploaded photo (a zip is refused: it belongs to Batch)."""
        name = display_name(name)
        token, folder, kind = self.receive(source, name)
        if kind == "zip":
            shutil.rmtree(folder, ignore_errors=True)
            raise CamtraceError(f"{name}: a zip archive; give it to Batch, which reads archives")
        return self.keep(Photo(token, name, folder, kind))

    def keep(self, photo: Photo) -> Photo:
        """Register ``photo``; past :attr:`Limits.photos` the oldest are removed."""
        with self._lock:
            self._photos[photo.id] = photo
            while len(self._photos) > self.limits.photos:
                _, old = self._photos.popitem(last=False)
                shutil.rmtree(old.folder, ignore_errors=True)
        return photo

    def photo(self, photo_id: str) -> Photo:
        with self._lock:
            if photo_id not in self._photos:
                raise KeyError(photo_id)
            return self._photos[photo_id]

    def drop(self, photo_id: str) -> None:
        """Forget a photo and remove its folder."""
        with self._lock:
            photo = self._photos.pop(photo_id, None)
        if photo is not None:
            shutil.rmtree(photo.folder, ignore_errors=True)

    def extract(self, archive: Path, name: str, into: Path) -> list[tuple[str, Path]]:
        """The files of the zip ``archive`` (called ``name``), each written to ``into`` under
        a numbered name, with the entry's name kept for display. Refused whole, before any
        byte is written, when an entry is absolute, climbs out with ``..``, is a link, or the
        entries or their unpacked bytes pass the limits."""
        try:
            with zipfile.ZipFile(archive) as zf:
                entries = [i for i in zf.infolist() if not i.is_dir()]
                for info in entries:
                    _check_entry(info, name)
                _check_totals(entries, name, self.limits)
                files = []
                for n, info in enumerate(e for e in entries if _wanted(e.filename)):
                    target = into / f"{n:05d}"
                    with zf.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)
                    files.append((display_name(info.filename), target))
                return files
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
            raise CamtraceError(f"{name}: not a readable zip archive ({e}); zip it again") from None


def _check_entry(info: zipfile.ZipInfo, name: str) -> None:
    """One line when the entry could write outside its folder, whatever the extractor."""
    entry = info.filename.replace("\\", "/")
    parts = PurePosixPath(entry).parts
    if entry.startswith("/") or re.match(r"^[A-Za-z]:", entry) or ".." in parts:
        raise CamtraceError(
            f"{name}: entry '{display_name(info.filename)}' points outside the archive (an "
            "absolute path or '..'); archive refused, nothing extracted"
        )
    if stat.S_ISLNK(info.external_attr >> 16):
        raise CamtraceError(
            f"{name}: entry '{display_name(info.filename)}' is a symbolic link; archive "
            "refused, nothing extracted"
        )


def _check_totals(entries: list[zipfile.ZipInfo], name: str, limits: Limits) -> None:
    if len(entries) > limits.zip_entries:
        raise CamtraceError(
            f"{name}: {len(entries)} entries, more than the server's {limits.zip_entries}; "
            "split the archive"
        )
    unpacked = sum(i.file_size for i in entries)
    if unpacked > limits.zip_bytes:
        raise CamtraceError(
            f"{name}: unpacks to {unpacked / 2**20:.0f} MB, more than the server's "
            f"{limits.zip_bytes / 2**20:.0f} MB; split the archive"
        )


def _wanted(entry: str) -> bool:
    """Not the metadata macOS and hidden files add to archives."""
    parts = PurePosixPath(entry.replace("\\", "/")).parts
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts)
