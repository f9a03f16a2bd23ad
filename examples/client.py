"""The Skate Client: drive a cluster through its client server, as with Ray Client.

Start a head first (it runs the client server on port 10001 by default):

    skate start --head --num-cpus 4
    python examples/client.py                 # or: python examples/client.py skate://host:10001
    skate stop

On another machine, set SKATE_AUTH_TOKEN to the cluster's token (the head prints where it is).
"""

import sys

import numpy as np

import skate as ray  # Skate speaks Ray's API


@ray.remote
def square(x):
    return x * x


@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else "ray://127.0.0.1:10001"
    with ray.init(address, namespace="example"):
        print("squares:", ray.get([square.remote(i) for i in range(5)]))
        counter = Counter.options(name="counter").remote()
        print("counter:", ray.get([counter.incr.remote() for _ in range(3)]))
        big = ray.put(np.ones(5_000_000))  # 40 MB, streamed to the cluster in chunks
        print("sum of a 40 MB array:", ray.get(ray.remote(lambda a: float(a.sum())).remote(big)))
        try:
            ray.get(ray.remote(lambda: 1 / 0).remote())
        except ZeroDivisionError as exc:
            print("the remote error came back:", type(exc).__name__)
    print("disconnected: the session's job ended and its actor was freed")


if __name__ == "__main__":
    main()
