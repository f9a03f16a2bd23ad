"""Ray's names for placement-group bundle resources, shared by the GCS, raylets and owners.

A committed bundle `i` of group `<pg>` (hex id) adds to its node, for each resource it holds,
`<name>_group_<pg>` (all the group's bundles on that node add up there) and
`<name>_group_<i>_<pg>`, plus 1000 units of the marker `bundle_group_<pg>` /
`bundle_group_<i>_<pg>`. A task placed in the group asks for its resources under those names
and for a sliver (0.001) of the marker, so even a task that needs nothing lands in its bundle.
"""

from __future__ import annotations

UNIT = 10_000  # fixed point, as raylet.resources.UNIT
BUNDLE_MARKER = 1000 * UNIT  # each bundle offers 1000 units of `bundle_group_...`
BUNDLE_SLIVER = 10  # what one task or actor asks of it (0.001)


def group_resources(pg_id: str, index: int, shape: dict[str, int]) -> dict[str, int]:
    """What committed bundle `index` (fixed-point `shape`) adds to its node."""
    out: dict[str, int] = {}
    for name, amount in list(shape.items()) + [("bundle", BUNDLE_MARKER)]:
        for key in (f"{name}_group_{pg_id}", f"{name}_group_{index}_{pg_id}"):
            out[key] = out.get(key, 0) + amount
    return out


def rewrite_demand(shape: dict[str, float], pg_id: str, index: int) -> dict[str, float]:
    """A demand placed in a group: each resource becomes the group's (index -1: any bundle of
    the group), plus a sliver of the bundle marker. A demand for bundle `i` takes from both
    bundle `i`'s and the group-wide names, so work placed in "any bundle" and work placed in
    a given bundle share one budget and cannot overcommit the group between them."""
    suffixes = [f"group_{pg_id}"] if index < 0 else [f"group_{index}_{pg_id}", f"group_{pg_id}"]
    out: dict[str, float] = {}
    for suffix in suffixes:
        out.update({f"{name}_{suffix}": amount for name, amount in shape.items() if amount})
        out[f"bundle_{suffix}"] = BUNDLE_SLIVER / UNIT
    return out


def group_of_resource(name: str) -> str | None:
    """The placement group a bundle resource belongs to (`CPU_group_1_<pg>` -> `<pg>`)."""
    if "_group_" not in name:
        return None
    return name.rpartition("_")[2]
