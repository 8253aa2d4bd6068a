"""A read-only mapping for the fields of frozen model objects.

A frozen dataclass that holds a plain ``dict`` can still be changed in place
(``model.parameters["Q_kidney"] = 0``), which silently changes its hash and every cached
compilation keyed on it. :class:`FrozenMap` refuses item assignment and deletion, compares
equal to a dict with the same items, pickles and deep-copies (process pools, Dask), and is
turned back into a dict with ``dict(m)`` for JSON.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["FrozenMap"]


class FrozenMap(Mapping):
    """An immutable ``str -> value`` mapping (a copy of what it is given)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping | None = None) -> None:
        object.__setattr__(self, "_data", dict(data or {}))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._data.items(), key=lambda kv: kv[0])))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenMap is read-only")

    def __reduce__(self):
        return (FrozenMap, (self._data,))

    def copy(self) -> dict:
        """A mutable ``dict`` copy."""
        return dict(self._data)
