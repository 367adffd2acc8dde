"""Which flakes a revisit pass visits: ``--filter "layers<=3,area_um2>=100"``.

A filter is comma-separated clauses ``FIELD OP VALUE`` that must all hold. Fields:
``layers`` (layer count from contrast; flakes without one never match a ``layers`` clause),
``area_um2``, ``confidence``, ``material``, ``class`` (mono, few, thick) and ``status``;
operators ``<=``, ``>=``, ``<``, ``>``, ``=`` (or ``==``) and ``!=`` (only ``=`` and ``!=``
for the text fields). The text of a filter is kept with the pass, so a resumed revisit
checks that it continues the same selection.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from flakefinder.errors import FlakefinderError

if TYPE_CHECKING:
    from collections.abc import Callable


class FilterError(FlakefinderError, ValueError):
    """A ``--filter`` that cannot be parsed; the message shows the bad clause."""


class Selectable(Protocol):
    """What a filter reads of a flake (``db.StoredFlake`` has all of it)."""

    @property
    def material(self) -> str: ...

    @property
    def layer_count(self) -> int | None: ...

    @property
    def area_um2(self) -> float: ...

    @property
    def confidence(self) -> float: ...


NUMERIC = {"layers": "layer_count", "area_um2": "area_um2", "confidence": "confidence"}
TEXT = {"material": "material", "class": "layer_class", "status": "status"}
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "!=": operator.ne,
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
    "=": operator.eq,
}
_CLAUSE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|!=|==|<|>|=)\s*(.+?)\s*$")


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: float | str

    def holds(self, flake: Any) -> bool:
        if self.field in NUMERIC:
            got = getattr(flake, NUMERIC[self.field])
            return got is not None and OPS[self.op](float(got), self.value)
        raw = getattr(flake, TEXT[self.field])
        got = str(getattr(raw, "value", raw)).lower()
        return OPS[self.op](got, str(self.value).lower())

    def __str__(self) -> str:
        value = f"{self.value:g}" if isinstance(self.value, float) else self.value
        return f"{self.field}{self.op}{value}"


@dataclass(frozen=True)
class FlakeFilter:
    """Clauses that must all hold (no clause: every flake)."""

    clauses: tuple[Clause, ...] = ()

    def matches(self, flake: Any) -> bool:
        return all(c.holds(flake) for c in self.clauses)

    def __str__(self) -> str:
        return ",".join(str(c) for c in self.clauses)


def parse_filter(text: str) -> FlakeFilter:
    """Parse ``"layers<=3,area_um2>=100"``; :class:`FilterError` names a bad clause."""
    if len(text) > 1000:
        raise FilterError("--filter is longer than 1000 characters")
    clauses = []
    for part in (p for p in text.split(",") if p.strip()):
        m = _CLAUSE.match(part)
        if m is None:
            raise FilterError(
                f"cannot read filter clause {part.strip()!r}: use FIELD OP VALUE, e.g. layers<=3"
            )
        name, op, raw = m.group(1).lower(), m.group(2), m.group(3)
        if name in NUMERIC:
            try:
                value: float | str = float(raw)
            except ValueError:
                raise FilterError(
                    f"filter clause {part.strip()!r}: {raw!r} is not a number"
                ) from None
            if not math.isfinite(float(value)):
                raise FilterError(f"filter clause {part.strip()!r}: the value must be finite")
        elif name in TEXT:
            if op not in ("=", "==", "!="):
                raise FilterError(f"filter clause {part.strip()!r}: {name} takes = or != only")
            value = raw.strip()
        else:
            known = ", ".join([*NUMERIC, *TEXT])
            raise FilterError(f"unknown filter field {name!r} in {part.strip()!r}; use {known}")
        clauses.append(Clause(name, "=" if op == "==" else op, value))
    return FlakeFilter(tuple(clauses))
