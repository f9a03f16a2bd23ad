"""Resource amounts in fixed point (1/10000 of a unit), so fractions add up exactly."""

from __future__ import annotations

UNIT = 10_000


def to_fixed(amounts: dict[str, float]) -> dict[str, int]:
    return {k: int(round(v * UNIT)) for k, v in amounts.items() if v}


def to_float(amounts: dict[str, int]) -> dict[str, float]:
    return {k: v / UNIT for k, v in amounts.items()}


def fits(need: dict[str, int], have: dict[str, int]) -> bool:
    return all(have.get(k, 0) >= v for k, v in need.items())


def subtract(have: dict[str, int], need: dict[str, int]) -> None:
    for k, v in need.items():
        have[k] = have.get(k, 0) - v


def add(have: dict[str, int], amount: dict[str, int]) -> None:
    for k, v in amount.items():
        have[k] = have.get(k, 0) + v
