"""Skate quickstart: remote functions and objects on a local cluster.

Run with: python examples/quickstart.py
"""

import time

import skate as ray  # Skate speaks Ray's API


@ray.remote
def square(x):
    return x * x


@ray.remote
def total(values):
    return sum(values)


@ray.remote(num_returns=2)
def min_max(values):
    return min(values), max(values)


def main():
    start = time.perf_counter()
    ctx = ray.init()
    print(f"local cluster at {ctx['address']} with {ray.cluster_resources().get('CPU')} CPUs")

    squares = [square.remote(i) for i in range(10)]
    print("squares:", ray.get(squares))

    # Refs passed as arguments are resolved before the task runs.
    print("sum of squares:", ray.get(total.remote(ray.get(squares))))
    lo, hi = min_max.remote(list(range(100)))
    print("min and max:", ray.get([lo, hi]))

    # Large values go to the shared-memory object store once and are read zero-copy.
    data = bytes(10_000_000)
    ref = ray.put(data)
    print("stored a 10 MB object:", len(ray.get(ref)), "bytes back")

    ready, pending = ray.wait(squares, num_returns=5)
    print(f"wait: {len(ready)} ready, {len(pending)} not yet")
    print(f"done in {time.perf_counter() - start:.2f} s")
    ray.shutdown()


if __name__ == "__main__":
    main()
