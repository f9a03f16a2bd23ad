"""Ray's state-API query language, shared by the GCS, the state API, the CLI and the HTTP server.

A query is `filters` (a list of `(key, op, value)` with op "=" or "!="), a `limit` and
`detail`. Values compare as strings, case-insensitively for the enum-like fields Ray
compares that way (state, type, ...), so `("state", "=", "failed")` works as in Ray.
Pure functions only: rows in, rows out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

OPS = ("=", "!=")
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
# Fields whose values are compared without regard to case (enum-like ones).
CASE_INSENSITIVE = frozenset({"state", "type", "status", "error_type", "reference_type", "worker_type"})


class StateRow(dict):
    """One row of a state listing: a dict that also reads as attributes (`row.state`), as
    Ray's state dataclasses do."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}") from None


def check_filters(filters: Iterable | None) -> list[tuple[str, str, str]]:
    """Normalize filters to (key, op, value) string triples; ValueError naming a bad one."""
    out = []
    for item in filters or ():
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise ValueError(f"a filter must be (key, op, value), got {item!r}")
        key, op, value = item
        if op not in OPS:
            raise ValueError(f"unsupported filter operator {op!r} in {item!r}: use '=' or '!='")
        out.append((str(key), op, _text(value)))
    return out


def parse_filter(text: str) -> tuple[str, str, str]:
    """`key=value` or `key!=value` (the CLI's and the HTTP query's form)."""
    if "!=" in text:
        key, _, value = text.partition("!=")
        op = "!="
    elif "=" in text:
        key, _, value = text.partition("=")
        op = "="
    else:
        raise ValueError(f"a filter must look like key=value or key!=value, got {text!r}")
    key, value = key.strip(), value.strip()
    if not key:
        raise ValueError(f"a filter must name a key, got {text!r}")
    return key, op, value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if value is None:
        return "None"
    return str(value)


def matches(row: dict, filters: list[tuple[str, str, str]]) -> bool:
    for key, op, value in filters:
        have = _text(row.get(key))
        if key in CASE_INSENSITIVE:
            equal = have.upper() == value.upper()
        else:
            equal = have == value
        if equal != (op == "="):
            return False
    return True


def check_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an int >= 1, got {limit!r}")
    return min(limit, MAX_LIMIT)


def query(
    rows: Iterable[dict], filters: Iterable | None, limit: int, columns: tuple[str, ...] | None = None
) -> tuple[list[StateRow], int]:
    """The rows matching every filter, at most `limit` of them, cut to `columns` if given.

    Returns (rows, number that matched before the limit)."""
    checked = check_filters(filters)
    limit = check_limit(limit)
    out: list[StateRow] = []
    total = 0
    for row in rows:
        if checked and not matches(row, checked):
            continue
        total += 1
        if len(out) < limit:
            out.append(StateRow(row if columns is None else {k: row.get(k) for k in columns}))
    return out, total
