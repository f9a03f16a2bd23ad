"""What a raylet tells tools about its node: its log files and its machine's load.

Handlers (added to the raylet's connection handlers):

    list_logs  {}                                   -> [{"name", "size", "mtime"}] of <session>/logs
    read_log   {"name", "offset"?, "tail_lines"?, "max_bytes"?}
               -> {"name", "data": bytes, "offset": where the next read starts, "size"}
    node_stats {}                                   -> {"cpu_percent", "num_cpus", "mem_total", "mem_used"}

`read_log` serves only plain files directly in this session's logs directory: a name with a
path separator, `..`, a NUL, or naming a symbolic link is refused (UnsafePathError), so a
client holding the cluster token still cannot read anything else on the machine.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

import psutil

from skate.exceptions import UnsafePathError

MAX_CHUNK = 4 * 1024 * 1024  # bytes per read_log reply
TAIL_BLOCK = 64 * 1024


def safe_log_path(logs_dir: str, name: str) -> str:
    """The path of log file `name` in `logs_dir`; UnsafePathError for anything else."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or os.path.basename(name) != name
    ):
        raise UnsafePathError(f"refused log file name {name!r}: a plain file name in the logs directory only")
    path = os.path.join(logs_dir, name)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no log file {name!r} in {logs_dir}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"refused log file {name!r}: not a regular file")
    return path


def list_logs(logs_dir: str) -> list[dict]:
    out = []
    with os.scandir(logs_dir) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                out.append({"name": entry.name, "size": st.st_size, "mtime": st.st_mtime})
    return sorted(out, key=lambda e: e["name"])


def _tail_start(f: Any, size: int, lines: int) -> int:
    """The offset where the last `lines` lines of an open file begin."""
    if lines <= 0:
        return size
    pos, seen = size, 0
    while pos > 0:
        step = min(TAIL_BLOCK, pos)
        pos -= step
        f.seek(pos)
        block = f.read(step)
        if pos + step == size and block.endswith(b"\n"):
            block = block[:-1]  # the final newline ends the last line, it starts none
        count = block.count(b"\n")
        if seen + count >= lines:
            cut = len(block)
            for _ in range(lines - seen):
                cut = block.rindex(b"\n", 0, cut)
            return pos + cut + 1
        seen += count
        if size - pos > MAX_CHUNK * 4:
            return max(0, size - MAX_CHUNK)  # very long lines: stop looking, show the end
    return 0


def read_log(logs_dir: str, payload: dict) -> dict:
    """A chunk of a log file: from `offset` (negative: from the end), or its last `tail_lines`."""
    name = payload.get("name", "")
    path = safe_log_path(logs_dir, name)
    max_bytes = max(1, min(int(payload.get("max_bytes") or MAX_CHUNK), MAX_CHUNK))
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if payload.get("tail_lines") is not None:
            start = _tail_start(f, size, int(payload["tail_lines"]))
        else:
            offset = int(payload.get("offset") or 0)
            start = max(0, size + offset) if offset < 0 else min(offset, size)
        f.seek(start)
        data = f.read(max_bytes)
    return {"name": name, "data": data, "offset": start + len(data), "size": size}


def node_stats() -> dict:
    mem = psutil.virtual_memory()
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "num_cpus": psutil.cpu_count() or 1,
        "mem_total": mem.total,
        "mem_used": mem.total - mem.available,
    }


def handlers(session_dir: str) -> dict[str, Callable[[Any, Any], Any]]:
    logs_dir = os.path.join(session_dir, "logs")
    psutil.cpu_percent(interval=None)  # the baseline the first node_stats measures from
    return {
        "list_logs": lambda c, p: list_logs(logs_dir),
        "read_log": lambda c, p: read_log(logs_dir, p or {}),
        "node_stats": lambda c, p: node_stats(),
    }
