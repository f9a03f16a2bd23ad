"""Text reports shared by `skate memory`, `skate status` and memory_summary()."""

from __future__ import annotations


def _mb(n: int | float | None) -> str:
    return "?" if n is None else f"{n / 2**20:,.1f} MiB"


GROUP_BY = ("NODE_ADDRESS", "STACK_TRACE")
SORT_BY = ("PID", "OBJECT_SIZE", "REFERENCE_TYPE")
ROW_TAIL = "reference kinds / call site"


def store_line(st: dict) -> str:
    """A node's store totals in one line."""
    return (
        f"Node {st['node_id'][:12]}: store {_mb(st['used_bytes'])} of {_mb(st['capacity_bytes'])} used, "
        f"{st['num_objects']} objects ({st['num_spilled']} only on disk); "
        f"spilled {_mb(st['spilled_bytes'])}, restored {_mb(st['restored_bytes'])}, "
        f"on disk now {_mb(st['spill_disk_bytes'])}"
    )


def _sort_key(sort_by: str):
    if sort_by == "PID":
        return lambda r: (r["pid"], -(r["size"] or 0))
    if sort_by == "REFERENCE_TYPE":
        return lambda r: (",".join(r["reference_kinds"]), -(r["size"] or 0))
    return lambda r: -(r["size"] or 0)


def format_memory(
    reports: list[dict],
    group_by: str = "NODE_ADDRESS",
    sort_by: str = "OBJECT_SIZE",
    units: str = "MB",
    num_entries: int | None = None,
) -> str:
    """Store totals per node, then the object rows in groups (by node, or by the call site that
    created them: STACK_TRACE), each group sorted and cut to `num_entries` rows, as `ray memory`."""
    from skate._memory_accounting import in_units

    if group_by not in GROUP_BY or sort_by not in SORT_BY:
        raise ValueError(f"group_by must be one of {GROUP_BY} and sort_by one of {SORT_BY}")
    lines = [store_line(report["store"]) for report in reports]
    groups: dict[str, list[dict]] = {}
    for report in reports:
        for row in report["objects"]:
            key = row["node_id"] if group_by == "NODE_ADDRESS" else row["call_site"]
            groups.setdefault(key, []).append(row)
    total_rows, total_owned = 0, 0
    for key, rows in groups.items():
        title = f"node {key[:12]}" if group_by == "NODE_ADDRESS" else f"call site {key}"
        size = sum(r["size"] or 0 for r in rows if r["owned_here"])
        kinds: dict[str, int] = {}
        for r in rows:
            for kind in r["reference_kinds"] or ["-"]:
                kinds[kind] = kinds.get(kind, 0) + 1
        lines += ["", f"--- {title}: {len(rows)} references, {in_units(size, units)} owned ---"]
        lines.append("  " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
        lines.append(f"{'object id':<42} {'size':>14} {'where':<18} {'pid':>7} {'process':<7} {ROW_TAIL}")
        shown = sorted(rows, key=_sort_key(sort_by))
        for r in shown if num_entries is None else shown[:num_entries]:
            kind_text = ",".join(r["reference_kinds"]) or "-"
            lines.append(
                f"{r['object_id']:<42} {in_units(r['size'], units):>14} {r['where']:<18} {r['pid']:>7} "
                f"{r['process']:<7} {kind_text}  {r['call_site']}"
            )
        if num_entries is not None and len(rows) > num_entries:
            lines.append(f"  ... {len(rows) - num_entries} more (--num-entries)")
        total_rows += len(rows)
        total_owned += size
    lines.append(
        f"--- {total_rows} references, {in_units(total_owned, units)} in objects owned by their process"
    )
    return "\n".join(lines)


def format_memory_stats(report: dict, units: str = "MB") -> str:
    """The memory report (skate._memory_accounting.cluster_report) for people: the GCS, each
    node's processes and store, and totals that count shared pages once."""
    from skate._memory_accounting import in_units

    def u(n: int | None) -> str:
        return in_units(n, units)

    def proc_line(p: dict) -> str:
        return (
            f"  {p['pid']:>7} {p['role']:<7} {u(p['rss']):>12} {u(p['shared']):>12} {u(p['heap']):>12} "
            f"{u(p['store_mapped']):>12}  {p.get('name') or ''}"
        )

    header = f"  {'pid':>7} {'role':<7} {'rss':>12} {'shared':>12} {'heap':>12} {'store mapped':>12}  runs"
    t = report["totals"]
    lines = ["Memory summary (heap = rss - shared; store pages mapped are shared, not heap)"]
    gcs = report.get("gcs") or {}
    if gcs.get("process"):
        lines += ["GCS", header, proc_line(gcs["process"])]
        tables = gcs.get("tables") or {}
        lines.append(
            "  GCS tables: "
            + ", ".join(f"{name} {fig['count']} ({u(fig['bytes'])})" for name, fig in tables.items())
        )
    for node in report["nodes"]:
        st = node["store"]
        lines += [
            f"Node {node['node_id'][:12]} ({node.get('node_ip') or '?'})",
            f"  store: {u(st['used_bytes'])} used of {u(st['capacity_bytes'])}; primary copies "
            f"{u(st['primary_bytes'])}, secondary copies {u(st['secondary_bytes'])}, being created "
            f"{u(st['being_created_bytes'])}, freed but still read {u(st['freed_held_by_reads_bytes'])}; "
            f"reads in progress pin {u(st['reading_bytes'])}",
            f"  spilled {u(st['spilled_bytes'])}, restored {u(st['restored_bytes'])}, "
            f"on disk now {u(st['spill_disk_bytes'])}",
            header,
            proc_line(node["raylet"]),
            *(proc_line(p) for p in node["processes"]),
            f"  node total: heaps {u(node['totals']['heap_bytes'])} + store used "
            f"{u(node['totals']['store_used_bytes'])} = {u(node['totals']['total_bytes'])}",
        ]
    lines.append(
        f"Cluster total: heaps {u(t['heap_bytes'])} (system {u(t['system_heap_bytes'])}, application "
        f"{u(t['application_heap_bytes'])}) + store used {u(t['store_used_bytes'])} = {u(t['total_bytes'])}"
    )
    lines.append(f"  ({t['note']})")
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
