"""Text reports shared by `skate memory`, `skate status` and memory_summary()."""

from __future__ import annotations


def _mb(n: int | float | None) -> str:
    return "?" if n is None else f"{n / 2**20:,.1f} MiB"


def format_memory(reports: list[dict]) -> str:
    lines = []
    for report in reports:
        st = report["store"]
        lines.append(
            f"Node {st['node_id'][:12]}: store {_mb(st['used_bytes'])} of {_mb(st['capacity_bytes'])} used, "
            f"{st['num_objects']} objects ({st['num_spilled']} only on disk); "
            f"spilled {_mb(st['spilled_bytes'])}, restored {_mb(st['restored_bytes'])}, "
            f"on disk now {_mb(st['spill_disk_bytes'])}"
        )
    rows = [row for report in reports for row in report["objects"]]
    lines.append("")
    lines.append(
        f"{'object id':<42} {'size':>12} {'where':<18} {'pid':>7} {'process':<7} reference kinds / call site"
    )
    for r in sorted(rows, key=lambda r: -(r["size"] or 0)):
        kinds = ",".join(r["reference_kinds"]) or "-"
        lines.append(
            f"{r['object_id']:<42} {_mb(r['size']):>12} {r['where']:<18} {r['pid']:>7} {r['process']:<7} "
            f"{kinds}  {r['call_site']}"
        )
    total = sum(r["size"] or 0 for r in rows if r["owned_here"])
    lines.append(f"--- {len(rows)} references, {_mb(total)} in objects owned by their process")
    return "\n".join(lines)


def group_usage(total: dict[str, float], available: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Per base resource of one node, (used, reserved) in placement groups. Each committed
    bundle adds `<name>_group_<pg>` (the group's total here) and `<name>_group_<i>_<pg>` (see
    skate._bundles); every placed task holds the group-wide name (one placed in bundle i holds
    both), so the group-wide names alone say what is reserved and what is used."""
    used: dict[str, float] = {}
    reserved: dict[str, float] = {}
    for key, amount in total.items():
        base, sep, rest = key.partition("_group_")
        if not sep or base == "bundle" or "_" in rest:  # not a group-wide bundle resource
            continue
        used[base] = used.get(base, 0.0) + amount - available.get(key, 0.0)
        reserved[base] = reserved.get(base, 0.0) + amount
    return {base: (min(used.get(base, 0.0), r), r) for base, r in reserved.items()}


def _amount(key: str, value: float) -> str:
    return _mb(value) if key in ("memory", "object_store_memory") else f"{value:g}"


def _reserved_note(key: str, used: float, reserved: float) -> str:
    return f" ({_amount(key, used)} used of {_amount(key, reserved)} reserved in placement groups)"


def format_status(nodes: list[dict], stats: dict[str, dict], groups: dict | None = None) -> str:
    """`skate status`: each node's resources (used / total), cluster usage with what placement
    groups reserve, in the manner of `ray status` ("x used of y reserved in placement groups"),
    and the placement groups by state."""
    lines = ["Nodes"]
    cluster_total: dict[str, float] = {}
    cluster_used: dict[str, float] = {}
    cluster_groups: dict[str, tuple[float, float]] = {}
    for n in nodes:
        state = "alive" if n["alive"] else "dead"
        lines.append(f"  {n['node_id'][:12]} ({state}) at {n.get('node_ip', '?')}")
        total, avail = n.get("resources", {}), n.get("available", {})
        in_groups = group_usage(total, avail)
        labels = {k: v for k, v in (n.get("labels") or {}).items() if k != "ray.io/node-id"}
        if labels:
            lines.append("    labels: " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())))
        for key in sorted(total):
            if key.startswith("node:") or "_group_" in key:
                continue
            used = total[key] - avail.get(key, 0)
            line = f"    {key}: {_amount(key, used)} / {_amount(key, total[key])}"
            if key in in_groups:
                line += _reserved_note(key, *in_groups[key])
            lines.append(line)
            if n["alive"]:
                cluster_total[key] = cluster_total.get(key, 0.0) + total[key]
                cluster_used[key] = cluster_used.get(key, 0.0) + used
        if n["alive"]:
            for key, (g_used, g_reserved) in in_groups.items():
                u, r = cluster_groups.get(key, (0.0, 0.0))
                cluster_groups[key] = (u + g_used, r + g_reserved)
        st = stats.get(n["node_id"])
        if st:
            lines.append(
                f"    object store: {_mb(st['used_bytes'])} / {_mb(st['capacity_bytes'])}, "
                f"spilled {_mb(st['spilled_bytes'])}"
            )
        pending = n.get("pending") or []
        if pending:
            lines.append(f"    pending: {len(pending)} lease request(s), e.g. {pending[0]}")
    lines += ["", "Resources", "  Usage:"]
    for key in sorted(cluster_total):
        line = f"    {_amount(key, cluster_used[key])}/{_amount(key, cluster_total[key])} {key}"
        if key in cluster_groups:
            line += _reserved_note(key, *cluster_groups[key])
        lines.append(line)
    if groups is not None:
        lines += ["", "Placement groups"]
        lines += format_groups(groups)
    return "\n".join(lines)


STATE_ORDER = ("CREATED", "PENDING", "RESCHEDULING", "REMOVED")


def format_groups(groups: dict, limit: int = 20) -> list[str]:
    """Counts by state, then one line per group not removed (at most `limit`)."""
    if not groups:
        return ["  (no placement groups)"]
    counts: dict[str, int] = {}
    for g in groups.values():
        counts[g["state"]] = counts.get(g["state"], 0) + 1
    states = sorted(counts, key=lambda s: (STATE_ORDER.index(s) if s in STATE_ORDER else len(STATE_ORDER), s))
    lines = ["  " + ", ".join(f"{counts[s]} {s}" for s in states)]
    live = [g for g in groups.values() if g["state"] != "REMOVED"]
    for g in live[:limit]:
        bundles = list((g.get("bundles") or {}).values())
        name = f" name={g['name']}" if g.get("name") else ""
        lines.append(
            f"  {str(g['placement_group_id'])[:12]} {g['state']} {g['strategy']} "
            f"{len(bundles)} bundle(s) {bundles}{name}"
        )
    if len(live) > limit:
        lines.append(f"  ... and {len(live) - limit} more")
    return lines


def format_gcs(info: dict | None, tables: bool = False) -> list[str]:
    """The GCS's lines of `skate status` (storage, when it started and restarted) and, with
    `tables`, its table sizes (`skate memory --stats`)."""
    import time

    if not info:
        return []
    start = info.get("start") or {}
    lines = [
        "",
        "GCS",
        f"  storage: {info.get('storage')} ({'durable' if info.get('durable') else 'in memory'})",
    ]
    if start.get("restarts"):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start["last_start"]))
        lines.append(f"  restarted {start['restarts']} time(s), last at {when}; tables reloaded from storage")
    elif start.get("first_start"):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start["first_start"]))
        lines.append(f"  running since {when} (never restarted)")
    if tables:
        t = info.get("tables") or {}
        lines.append(
            f"  tables: {t.get('nodes', 0)} nodes, {t.get('jobs', 0)} jobs, {t.get('actors', 0)} actors "
            f"({t.get('named_actors', 0)} named), {t.get('placement_groups', 0)} placement groups, "
            f"{t.get('kv_entries', 0)} KV entries ({_mb(t.get('kv_bytes', 0))}); "
            f"{info.get('storage_writes', 0)} storage writes"
        )
    return lines
