"""Node labels and label constraints: parsing, checking and matching, with no I/O.

A node carries labels, a dict of str to str (`skate start --labels`, `init(labels=...)`), plus
the default `ray.io/node-id`. A task or actor may constrain where it runs by those labels:

- `label_selector={"zone": "a"}` (Ray's selector syntax; every entry must hold): `"v"` the label
  equals v, `"!v"` it does not (or the node lacks it), `"in(a,b)"` it is one of them,
  `"!in(a,b)"` it is none of them (or missing);
- `NodeLabelSchedulingStrategy(hard={...}, soft={...})` with `In`, `NotIn`, `Exists`,
  `DoesNotExist`: hard expressions must all hold; soft ones only make a node preferred.

Both compile to one wire form, the same in owners, raylets and the GCS: an expression is
`(key, op, values)` with op one of IN, NOT_IN, EXISTS, DOES_NOT_EXIST, and a constraint is
`(hard, soft)`, tuples of expressions (hashable: it is part of a task's scheduling key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

IN, NOT_IN, EXISTS, DOES_NOT_EXIST = "in", "not_in", "exists", "does_not_exist"
OPERATORS = (IN, NOT_IN, EXISTS, DOES_NOT_EXIST)
NODE_ID_LABEL = "ray.io/node-id"  # Ray's default label, kept under Ray's name so programs run unchanged

Expr = tuple[str, str, tuple[str, ...]]
Constraint = tuple[tuple[Expr, ...], tuple[Expr, ...]]

# Kubernetes' label syntax, which Ray follows: a name (or value) is up to 63 characters,
# alphanumeric at both ends, with - _ . inside; a key may have a DNS-subdomain prefix and "/".
_NAME = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_NAME_RE = re.compile(_NAME)
_PREFIX_RE = re.compile(rf"{_NAME}(\.{_NAME})*")
_IN_RE = re.compile(r"^(!?)in\((.*)\)$")


def key_error(key: str) -> str | None:
    """Why `key` is not a valid label key, or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _PREFIX_RE.fullmatch(prefix)):
        return (
            f"invalid label key prefix {prefix!r} in {key!r}: a prefix is DNS labels separated by dots, "
            "at most 253 characters"
        )
    if len(name) > 63 or not _NAME_RE.fullmatch(name):
        return (
            f"invalid label key {key!r}: the name must be 1-63 characters, alphanumeric at both ends, "
            "with '-', '_', '.' or alphanumerics between"
        )
    return None


def value_error(value: str, what: str) -> str | None:
    """Why `value` is not a valid label value ("" is valid), or None."""
    if value == "" or (len(value) <= 63 and _NAME_RE.fullmatch(value)):
        return None
    return (
        f"invalid label value {value!r} for {what}: a value is empty or 1-63 characters, alphanumeric "
        "at both ends, with '-', '_', '.' or alphanumerics between"
    )


def check_node_labels(labels: Any, what: str = "labels") -> dict[str, str]:
    """A node's labels, checked: TypeError for a non-dict or a non-str key or value, ValueError
    for bad syntax; each names the culprit."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise TypeError(
            f'{what} must be a dict of str to str, e.g. {{"zone": "a"}}; got {type(labels).__name__}'
        )
    out: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str):
            raise TypeError(f"{what}: label keys must be str, got {type(key).__name__} {key!r}")
        if not isinstance(value, str):
            raise TypeError(
                f"{what}: the value of label {key!r} must be a str, got {type(value).__name__} {value!r}"
            )
        problem = key_error(key) or value_error(value, f"label {key!r}")
        if problem:
            raise ValueError(f"{what}: {problem}")
        out[key] = value
    return out


def parse_labels_arg(text: str) -> dict[str, str]:
    """`--labels` of `skate start`: JSON (`{"zone": "a"}`) or Ray's `zone=a,disk=ssd` form."""
    text = text.strip()
    if len(text) > 1 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"--labels is not valid JSON ({exc}): {text!r}") from None
        return check_node_labels(parsed, "--labels")
    labels: dict[str, str] = {}
    for pair in text.split(","):
        key, eq, value = pair.partition("=")
        if not eq or "=" in value:
            raise ValueError(f"--labels: {pair.strip()!r} is not key=value (use 'k1=v1,k2=v2' or JSON)")
        labels[key.strip()] = value.strip()
    return check_node_labels(labels, "--labels")


def node_labels(node_id: str, custom: Mapping[str, str] | None) -> dict[str, str]:
    """All of a node's labels: the default ones, then the custom ones (which may override them)."""
    return {NODE_ID_LABEL: node_id, **(custom or {})}


# -- constraints ----------------------------------------------------------------------
def parse_selector_value(key: str, selector: str) -> Expr:
    """One entry of a `label_selector`, as an expression; ValueError naming it if malformed."""
    match = _IN_RE.match(selector)
    if match:
        negate, inner = match.groups()
        values = tuple(v.strip() for v in inner.split(","))
        if not values or any(not v or value_error(v, key) for v in values):
            raise ValueError(
                f"label_selector[{key!r}] = {selector!r}: in(...) needs one or more valid values, "
                "e.g. 'in(a,b)' or '!in(a,b)'"
            )
        return (key, NOT_IN if negate else IN, values)
    negate = selector.startswith("!")
    value = selector[1:] if negate else selector
    problem = value_error(value, f"label_selector[{key!r}]")
    if problem or (negate and not value):
        raise ValueError(
            f"label_selector[{key!r}] = {selector!r} is not a selector: use 'value', '!value', "
            f"'in(v1,v2)' or '!in(v1,v2)' ({problem or 'nothing after !'})"
        )
    return (key, NOT_IN if negate else IN, (value,))


def parse_label_selector(selector: Any) -> tuple[Expr, ...]:
    """A `label_selector` option as hard expressions: TypeError for wrong types, ValueError for
    an empty or malformed key or value (each names the culprit)."""
    if selector is None:
        return ()
    if not isinstance(selector, Mapping):
        raise TypeError(
            'label_selector must be a dict of str to str, e.g. {"zone": "a"}; got '
            f"{type(selector).__name__} {selector!r}"
        )
    exprs = []
    for key, value in selector.items():
        if not isinstance(key, str):
            raise TypeError(f"label_selector keys must be str, got {type(key).__name__} {key!r}")
        if not isinstance(value, str):
            raise TypeError(f"label_selector[{key!r}] must be a str, got {type(value).__name__} {value!r}")
        problem = key_error(key)
        if problem:
            raise ValueError(f"label_selector: {problem}")
        exprs.append(parse_selector_value(key, value))
    return tuple(exprs)


def expression(key: str, op: str, values: Iterable[str] = ()) -> Expr:
    """A checked expression (the operators of NodeLabelSchedulingStrategy build these)."""
    if op not in OPERATORS:
        raise ValueError(f"unknown label operator {op!r}; known: {OPERATORS}")
    if not isinstance(key, str) or not key:
        raise ValueError(f"a label key must be a non-empty str, got {key!r}")
    vals = tuple(values)
    if op in (IN, NOT_IN) and not vals:
        raise ValueError(f"label {key!r}: {op} needs at least one value")
    return (key, op, vals)


def constraint(hard: Iterable[Expr] = (), soft: Iterable[Expr] = ()) -> Constraint | None:
    """The wire form of hard and soft expressions; None when there are none."""
    h, s = tuple(hard), tuple(soft)
    return (h, s) if h or s else None


def from_wire(value: Any) -> Constraint | None:
    """A constraint as it came over the wire (lists), back as hashable tuples."""
    if not value:
        return None
    hard, soft = value
    return constraint(
        ((k, op, tuple(vs)) for k, op, vs in hard),
        ((k, op, tuple(vs)) for k, op, vs in soft),
    )


# -- matching -------------------------------------------------------------------------
def expr_matches(labels: Mapping[str, str], expr: Expr) -> bool:
    """Does a node with `labels` satisfy one expression? A missing key satisfies NOT_IN and
    DOES_NOT_EXIST only."""
    key, op, values = expr
    present = key in labels
    if op == IN:
        return present and labels[key] in values
    if op == NOT_IN:
        return not present or labels[key] not in values
    if op == EXISTS:
        return present
    if op == DOES_NOT_EXIST:
        return not present
    raise ValueError(f"unknown label operator {op!r} in {expr!r}")


def matches(labels: Mapping[str, str], exprs: Iterable[Expr]) -> bool:
    """Every expression holds (no expressions: any node)."""
    return all(expr_matches(labels, e) for e in exprs)


def describe(con: Constraint | None) -> str:
    """A constraint for messages: `zone in (a), gpu exists`."""
    if not con:
        return "no label constraint"

    def one(e: Expr) -> str:
        key, op, values = e
        return f"{key} {op.replace('_', ' ')}" + (f" ({', '.join(values)})" if values else "")

    hard, soft = con
    parts = []
    if hard:
        parts.append("hard: " + ", ".join(one(e) for e in hard))
    if soft:
        parts.append("soft: " + ", ".join(one(e) for e in soft))
    return "; ".join(parts)
