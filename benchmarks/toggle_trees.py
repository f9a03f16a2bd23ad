"""Task events' cost (on against off) in several Skate trees, their blocks interleaved.

    python benchmarks/toggle_trees.py BLOCKS SECONDS LINE TREE [TREE...]

Each block runs `side_by_side.py --toggle`'s block (one fresh runtime, 4 rounds A B B A of
the line's calls with task events on and off) once per tree, the trees' order reversed
every other block, so every tree sees the same minutes of a noisy machine. Prints each
block's ratios as it goes, then per tree the geometric mean of its per-block ratios with a
95% bootstrap interval, and with two trees the paired ratio (first tree's over second's,
block by block). Use it to split a cost between changes: a tree with one part taken out
against the tree with everything (`cp -r skate benchmarks /tmp/tree-x` and edit there).
"""

from __future__ import annotations

import os
import statistics
import sys

from side_by_side import block_toggle, interval


def main() -> None:
    blocks, secs, line, trees = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
    if not trees:
        sys.exit(__doc__)
    ratios: dict[str, list[float]] = {t: [] for t in trees}
    for b in range(blocks):
        for tree in trees if b % 2 == 0 else trees[::-1]:
            got = block_toggle([tree], [line], secs, 4, b % 2)
            ratios[tree].append(got[(line, 0)] / got[(line, 1)])
        print(
            b, " ".join(f"{os.path.basename(t.rstrip('/'))}={ratios[t][-1]:.3f}" for t in trees), flush=True
        )
    for tree in trees:
        g = statistics.geometric_mean(ratios[tree])
        lo, hi = interval(ratios[tree])
        print(f"{tree}: {g:.3f} [{lo:.3f}, {hi:.3f}], cost {100 * (1 - g):.1f}%")
    if len(trees) == 2:
        paired = [a / b for a, b in zip(ratios[trees[0]], ratios[trees[1]])]
        g = statistics.geometric_mean(paired)
        lo, hi = interval(paired)
        print(f"paired {trees[0]} / {trees[1]}: {g:.3f} [{lo:.3f}, {hi:.3f}]")
    print("raw", {t: [round(r, 4) for r in v] for t, v in ratios.items()})


if __name__ == "__main__":
    main()
