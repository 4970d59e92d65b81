"""The manifest: one table per dataset, the contract between every data step.

Columns: ``path, make, model, instance, scene, shot, split``. ``index`` (real datasets) and
``simulate`` (SimCam) both write it, so later steps read real and simulated data alike.
Splits are a column, not folders; the leak check reads this table. Paths are stored
relative to the manifest's folder so a dataset can be moved as a whole.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from camtrace.errors import CamtraceError
from camtrace.io import write_text

COLUMNS = ("path", "make", "model", "instance", "scene", "shot", "split")
MANIFEST_NAME = "manifest.csv"


@dataclass(frozen=True)
class Record:
    """One image: where it is, which camera shot it, which scene it shows, its split."""

    path: str
    make: str
    model: str
    instance: str
    scene: str = ""
    shot: str = ""
    split: str = ""

    @property
    def device(self) -> str:
        """A camera instance id unique across models (Dresden's ``Model_instance``)."""
        return f"{self.model}_{self.instance}"


class Manifest:
    """An ordered table of :class:`Record` rows, rooted at a folder."""

    def __init__(self, records: Iterable[Record], root: str | Path = ".") -> None:
        self.records: list[Record] = list(records)
        self.root = Path(root).resolve()

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __getitem__(self, i: int) -> Record:
        return self.records[i]

    def abspath(self, record: Record) -> Path:
        """The file of ``record`` on disk."""
        p = Path(record.path)
        return p if p.is_absolute() else self.root / p

    @property
    def models(self) -> list[str]:
        """Camera models, sorted: the class list of any detector trained on this data."""
        return sorted({r.model for r in self.records})

    def filter(self, keep: Callable[[Record], bool]) -> Manifest:
        return Manifest([r for r in self.records if keep(r)], self.root)

    def split(self, name: str) -> Manifest:
        """The rows whose ``split`` column equals ``name``."""
        return self.filter(lambda r: r.split == name)

    def with_records(self, records: Iterable[Record]) -> Manifest:
        return Manifest(records, self.root)

    def digest(self) -> str:
        """SHA-256 of the table's content: recorded in checkpoints and run metadata."""
        h = hashlib.sha256()
        for r in self.records:
            h.update("\t".join(getattr(r, c) for c in COLUMNS).encode() + b"\n")
        return h.hexdigest()

    def to_csv_text(self) -> str:
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in self.records:
            w.writerow([getattr(r, c) for c in COLUMNS])
        return buf.getvalue()

    def save(self, path: str | Path) -> Path:
        """Write the table atomically; paths are made relative to the file's folder."""
        path = Path(path)
        if path.is_dir() or path.suffix == "":
            path = path / MANIFEST_NAME
        base = path.parent.resolve()
        rel = []
        for r in self.records:
            p = self.abspath(r).resolve()
            try:
                p = p.relative_to(base)
            except ValueError:
                pass
            rel.append(dataclasses.replace(r, path=p.as_posix()))
        write_text(path, Manifest(rel, base).to_csv_text())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read a manifest CSV (or the ``manifest.csv`` inside a folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        if not path.is_file():
            raise CamtraceError(
                f"{path}: no manifest here; create one with 'camtrace simulate' or 'camtrace index'"
            )
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = {"path", "model"} - set(reader.fieldnames or ())
            if missing:
                raise CamtraceError(
                    f"{path}: not a camtrace manifest (missing columns {sorted(missing)})"
                )
            rows = [Record(**{c: (row.get(c) or "") for c in COLUMNS}) for row in reader]
        return cls(rows, path.parent)
