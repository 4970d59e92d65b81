"""One registry style for everything camtrace builds by name: detector architectures,
attacks and generative methods alike (``@ARCHITECTURES.register(...)``-style decorators,
or ``add`` for instances); an unknown name is one line listing the choices."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from camtrace.errors import CamtraceError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one ``kind`` ("attack", "architecture", ...), in registration
    order; names are matched case-insensitively."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        key = name.lower()
        if key in self._entries:
            raise CamtraceError(f"{self.kind} '{name}' is registered twice; rename one")
        self._entries[key] = entry
        return entry

    def register(self, name: str | Callable[[T], str]) -> Callable[[T], T]:
        """Decorator: register the decorated class under ``name`` (or ``name(cls)``)."""

        def add(entry: T) -> T:
            return self.add(name(entry) if callable(name) else name, entry)

        return add

    def remove(self, name: str) -> None:
        """Unregister ``name`` (tests that register a toy entry)."""
        del self._entries[name.lower()]

    def get(self, name: str) -> T:
        try:
            return self._entries[name.lower()]
        except KeyError:
            raise CamtraceError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(self._entries)}"
            ) from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)
