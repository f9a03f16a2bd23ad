"""Reading a process's memory from the OS (psutil), for the memory report (skate._memory_accounting).

A reading is {pid, rss, shared, store_mapped} in bytes: `rss` and `shared` as psutil's
memory_info gives them (on Linux, shared = file-backed + shared-memory resident pages), and
`store_mapped` the resident pages of the mapping of the store's arena file (from
/proc/<pid>/smaps, through psutil's memory_maps), a part of `shared`.
"""

from __future__ import annotations

import psutil


def read_process(pid: int, arena_path: str | None = None) -> dict | None:
    """The reading of process `pid`, or None when it is gone or may not be read."""
    try:
        proc = psutil.Process(pid)
        info = proc.memory_info()
        mapped = 0
        if arena_path:
            for m in proc.memory_maps(grouped=True):
                if m.path.startswith(arena_path):  # " (deleted)" once the file is unlinked
                    mapped += m.rss
    except (psutil.Error, OSError):
        return None
    return {
        "pid": pid,
        "rss": int(info.rss),
        "shared": int(getattr(info, "shared", 0)),
        "store_mapped": mapped,
    }
