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


def format_status(nodes: list[dict], stats: dict[str, dict]) -> str:
    lines = ["Nodes"]
    for n in nodes:
        state = "alive" if n["alive"] else "dead"
        lines.append(f"  {n['node_id'][:12]} ({state}) at {n.get('node_ip', '?')}")
        total, avail = n.get("resources", {}), n.get("available", {})
        for key in sorted(total):
            if key.startswith("node:"):
                continue
            used = total[key] - avail.get(key, 0)
            if key in ("memory", "object_store_memory"):
                lines.append(f"    {key}: {_mb(used)} / {_mb(total[key])}")
            else:
                lines.append(f"    {key}: {used:g} / {total[key]:g}")
        st = stats.get(n["node_id"])
        if st:
            lines.append(
                f"    object store: {_mb(st['used_bytes'])} / {_mb(st['capacity_bytes'])}, "
                f"spilled {_mb(st['spilled_bytes'])}"
            )
        pending = n.get("pending") or []
        if pending:
            lines.append(f"    pending: {len(pending)} lease request(s), e.g. {pending[0]}")
    return "\n".join(lines)
