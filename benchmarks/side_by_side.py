"""Skate and Ray 2.60 side by side in one sitting, one runtime up at a time.

Ray idles at about 6% of a core and Skate at 0.4% (measured on a 2-CPU VM), so running both at
once would tax Skate's lines with Ray's background work. Instead, each block starts a fresh
runtime, runs every line for SECONDS, shuts it down, then does the same for the other (which
goes first alternates), so both see the same minutes of a noisy machine.

    python benchmarks/side_by_side.py BLOCKS SECONDS [lines] [A B]

A and B are "ray" (run by $RAY_PYTHON, a Python with ray==2.60.0 installed) or the path of a
Skate tree (this one by default), optionally after environment settings for that side:
"SKATE_TASK_EVENTS=0@." is this tree with task events off (issue 17's on/off comparison:
`side_by_side.py 10 1.0 all . SKATE_TASK_EVENTS=0@.`). The default pair is this tree against
Ray. Lines are "all" or a comma-separated subset of: tasks sync, actor sync, tasks async,
actor async, async-actor async. Prints a markdown table: medians and the ratio per block
(min / median / max).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RAY_PYTHON = os.environ.get("RAY_PYTHON", "python")
ALL_LINES = ["tasks sync", "actor sync", "tasks async", "actor async", "async-actor async"]


def parse(side: str) -> tuple[dict[str, str], str]:
    """A side's environment settings and its runtime ("ray" or a tree's path)."""
    settings, _, spec = side.rpartition("@")
    return dict(kv.split("=", 1) for kv in settings.split(",") if kv), spec


def start(side: str) -> subprocess.Popen:
    worker = os.path.join(HERE, "side_worker.py")
    extra, spec = parse(side)
    if spec == "ray":
        cmd, env = [RAY_PYTHON, worker, "ray"], dict(os.environ, **extra)
    else:
        tree = os.path.abspath(spec)
        cmd, env = [sys.executable, worker, "skate"], dict(os.environ, PYTHONPATH=tree, **extra)
    pipe, quiet = subprocess.PIPE, subprocess.DEVNULL
    return subprocess.Popen(cmd, stdin=pipe, stdout=pipe, stderr=quiet, text=True, env=env, cwd="/tmp")


def main() -> None:
    blocks, secs = int(sys.argv[1]), float(sys.argv[2])
    lines = sys.argv[3].split(",") if len(sys.argv) > 3 and sys.argv[3] != "all" else ALL_LINES
    specs = sys.argv[4:6] if len(sys.argv) > 5 else [ROOT, "ray"]
    print(f"A = {specs[0]}, B = {specs[1]}; {blocks} blocks of {secs} s per line, a fresh runtime per block")
    res: dict[tuple[str, int], list[float]] = {}
    for b in range(blocks):
        for side in (0, 1) if b % 2 == 0 else (1, 0):
            proc = start(specs[side])
            assert proc.stdin is not None and proc.stdout is not None
            while proc.stdout.readline().strip() != "ready":
                pass
            for line in lines:
                proc.stdin.write(f"{line} {secs}\n")
                proc.stdin.flush()
                res.setdefault((line, side), []).append(float(proc.stdout.readline()))
            proc.stdin.close()
            proc.wait(120)
            if parse(specs[side])[1] == "ray":
                ray = os.path.join(os.path.dirname(RAY_PYTHON), "ray")
                subprocess.run([ray, "stop", "--force"], capture_output=True)
    print("| line | A (median) | B (median) | A / B (medians) | A / B per block: min / median / max |")
    print("|---|---|---|---|---|")
    digits = 1 if any(parse(s)[1] == "ray" for s in specs) else 3  # two Skates: the small differences matter
    for line in lines:
        a, b = res[(line, 0)], res[(line, 1)]
        ratios = sorted(x / y for x, y in zip(a, b))
        print(
            f"| {line} | {statistics.median(a):,.0f} | {statistics.median(b):,.0f} | "
            f"{statistics.median(a) / statistics.median(b):.{digits}f}x | "
            f"{ratios[0]:.{digits}f} / {statistics.median(ratios):.{digits}f} / {ratios[-1]:.{digits}f} |"
        )
    print("raw", {f"{k[0]}/{'AB'[k[1]]}": [round(v) for v in vs] for k, vs in res.items()})


if __name__ == "__main__":
    main()
