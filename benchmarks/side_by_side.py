"""Skate and Ray 2.60 side by side in one sitting.

Ray idles at about 6% of a core and Skate at 0.4% (measured on a 2-CPU VM), so running both at
once would tax Skate's lines with Ray's background work. Instead, each block starts a fresh
runtime, runs every line for SECONDS, shuts it down, then does the same for the other (which
goes first alternates), so both see the same minutes of a noisy machine.

    python benchmarks/side_by_side.py [--paired ROUNDS | --toggle ROUNDS] BLOCKS SECONDS [lines] [A B]

A and B are "ray" (run by $RAY_PYTHON, a Python with ray==2.60.0 installed) or the path of a
Skate tree (this one by default), optionally after environment settings for that side:
"SKATE_TASK_EVENTS=0@." is this tree with task events off. The default pair is this tree
against Ray. Lines are "all" or a comma-separated subset of: tasks sync, actor sync, tasks
async, actor async, async-actor async. Prints a markdown table: medians and the ratio per
block (min / median / max).

--paired ROUNDS (two Skates only, as issue 17's on/off comparison: `side_by_side.py --paired
4 24 0.5 all . SKATE_TASK_EVENTS=0@.`): both runtimes stay up for a block, one idle while the
other runs, and each line runs ROUNDS times on each side in A B B A order, so a pair of runs
is a second apart rather than a runtime start apart; which side starts first alternates. A
block's figure per side is the median of its rounds; the per-block ratio compares those.
Fresh runtimes per block still sample what a start decides (which worker lands where).

The last column is the geometric mean of the per-block ratios with a 95% bootstrap interval
(blocks resampled): blocks are the independent samples, a block's rounds are not.

--toggle ROUNDS (issue 17's figure: `side_by_side.py --toggle 4 16 0.5 all .`): one runtime
(A, this tree by default; "ray" works too) per block, and B is the same calls with task
events off (Ray's `enable_task_events=False`: a function declared so, the same actors' methods
with the option), each line alternating A B B A. No second runtime, so nothing a start decides
differs between the sides.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RAY_PYTHON = os.environ.get("RAY_PYTHON", "python")
ALL_LINES = ["tasks sync", "actor sync", "tasks async", "actor async", "async-actor async"]


def parse(side: str) -> tuple[dict[str, str], str]:
    """A side's environment settings and its runtime ("ray" or a tree's path)."""
    settings, _, spec = side.rpartition("@")
    return dict(kv.split("=", 1) for kv in settings.split(",") if kv), spec


def start(side: str) -> subprocess.Popen:
    """One side's runtime, warmed up and waiting for commands."""
    worker = os.path.join(HERE, "side_worker.py")
    extra, spec = parse(side)
    if spec == "ray":
        cmd, env = [RAY_PYTHON, worker, "ray"], dict(os.environ, **extra)
    else:
        tree = os.path.abspath(spec)
        cmd, env = [sys.executable, worker, "skate"], dict(os.environ, PYTHONPATH=tree, **extra)
    pipe, quiet = subprocess.PIPE, subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdin=pipe, stdout=pipe, stderr=quiet, text=True, env=env, cwd="/tmp")
    assert proc.stdout is not None
    while proc.stdout.readline().strip() != "ready":
        pass
    return proc


def run(proc: subprocess.Popen, line: str, secs: float) -> float:
    """Calls per second of one timed run of a line."""
    return run_counted(proc, line, secs)[0]


def run_counted(proc: subprocess.Popen, line: str, secs: float) -> tuple[float, int]:
    """Calls per second of one timed run of a line, and every call the run made (its untimed
    first one too)."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{line} {secs}\n")
    proc.stdin.flush()
    rate, calls = proc.stdout.readline().split()
    return float(rate), int(calls)


def stop(proc: subprocess.Popen, side: str) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(120)
    if parse(side)[1] == "ray":
        ray = os.path.join(os.path.dirname(RAY_PYTHON), "ray")
        subprocess.run([ray, "stop", "--force"], capture_output=True)


Figures = dict[tuple[str, int], float]  # (line, side) -> calls per second


def block_apart(specs: list[str], lines: list[str], secs: float, first: int) -> Figures:
    """One block, one runtime up at a time."""
    out = {}
    for side in (first, 1 - first):
        proc = start(specs[side])
        for line in lines:
            out[(line, side)] = run(proc, line, secs)
        stop(proc, specs[side])
    return out


def block_paired(specs: list[str], lines: list[str], secs: float, rounds: int, first: int) -> Figures:
    """One block, both runtimes up (`first` started first), each line's runs alternating
    A B B A."""
    procs: list[Any] = [None, None]
    for side in (first, 1 - first):
        procs[side] = start(specs[side])
    out = {}
    for line in lines:
        seen: list[list[float]] = [[], []]
        for r in range(rounds):
            for side in (0, 1) if r % 2 == 0 else (1, 0):
                seen[side].append(run(procs[side], line, secs))
        for side in (0, 1):
            out[(line, side)] = statistics.median(seen[side])
    for side in (0, 1):
        stop(procs[side], specs[side])
    return out


def block_toggle(specs: list[str], lines: list[str], secs: float, rounds: int, first: int) -> Figures:
    """One block, one runtime: each line's calls with task events on (side 0) and off (side 1,
    `enable_task_events=False`), alternating A B B A (side_worker's "loud" and "quiet" lines:
    both call methods bound once)."""
    proc = start(specs[0])
    out = {}
    for line in lines:
        seen: list[list[float]] = [[], []]
        for r in range(rounds):
            for side in (0, 1) if (r + first) % 2 == 0 else (1, 0):
                seen[side].append(run(proc, f"loud {line}" if side == 0 else f"quiet {line}", secs))
        for side in (0, 1):
            out[(line, side)] = statistics.median(seen[side])
    stop(proc, specs[0])
    return out


def interval(ratios: list[float], draws: int = 10_000) -> tuple[float, float]:
    """A 95% bootstrap interval of the geometric mean of per-block ratios (blocks resampled
    with replacement; a fixed seed, so a table is reproducible from its raw figures)."""
    rng = random.Random(17)
    logs = [math.log(r) for r in ratios]
    means = sorted(statistics.fmean(rng.choices(logs, k=len(logs))) for _ in range(draws))
    return math.exp(means[int(0.025 * draws)]), math.exp(means[int(0.975 * draws) - 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paired", type=int, default=0, metavar="ROUNDS")
    ap.add_argument("--toggle", type=int, default=0, metavar="ROUNDS")
    ap.add_argument("blocks", type=int)
    ap.add_argument("seconds", type=float)
    ap.add_argument("lines", nargs="?", default="all")
    ap.add_argument("sides", nargs="*")
    args = ap.parse_args()
    lines = ALL_LINES if args.lines == "all" else args.lines.split(",")
    specs = args.sides if len(args.sides) == 2 else [ROOT, "ray"]
    if args.paired and any(parse(s)[1] == "ray" for s in specs):
        sys.exit("--paired is for two Skates: Ray's idle load would tax the other side")
    if args.toggle:  # one runtime (A): B is its calls with task events off
        specs = [args.sides[0] if args.sides else ROOT, "the same calls with enable_task_events=False"]
    how = f"paired, {args.paired} rounds A B B A" if args.paired else "a fresh runtime per side"
    if args.toggle:
        how = f"one runtime per block, {args.toggle} rounds A B B A"
    print(f"A = {specs[0]}, B = {specs[1]}; {args.blocks} blocks of {args.seconds} s per line ({how})")
    res: dict[tuple[str, int], list[float]] = {}
    for b in range(args.blocks):
        if args.toggle:
            got = block_toggle(specs, lines, args.seconds, args.toggle, b % 2)
        elif args.paired:
            got = block_paired(specs, lines, args.seconds, args.paired, b % 2)
        else:
            got = block_apart(specs, lines, args.seconds, b % 2)
        for key, value in got.items():
            res.setdefault(key, []).append(value)
    print(
        "| line | A (median) | B (median) | A / B (medians) | A / B per block: min / median / max "
        "| geometric mean of blocks [95% interval] |"
    )
    print("|---|---|---|---|---|---|")
    # two Skates, or one runtime against itself: the small differences matter
    digits = 3 if args.toggle or not any(parse(s)[1] == "ray" for s in specs) else 1
    for line in lines:
        a, b = res[(line, 0)], res[(line, 1)]
        ratios = sorted(x / y for x, y in zip(a, b))
        low, high = interval(ratios)
        mean = statistics.geometric_mean(ratios)
        print(
            f"| {line} | {statistics.median(a):,.0f} | {statistics.median(b):,.0f} | "
            f"{statistics.median(a) / statistics.median(b):.{digits}f}x | "
            f"{ratios[0]:.{digits}f} / {statistics.median(ratios):.{digits}f} / {ratios[-1]:.{digits}f} "
            f"| {mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}] |"
        )
    print("raw", {f"{k[0]}/{'AB'[k[1]]}": [round(v) for v in vs] for k, vs in res.items()})


if __name__ == "__main__":
    main()
