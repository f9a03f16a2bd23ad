"""Streaming generators: use each item as soon as the task yields it.

Run with: python examples/streaming.py
"""

import time

import skate as ray


@ray.remote
def countdown(n):
    for i in range(n, 0, -1):
        time.sleep(0.1)  # work that takes a while per item
        yield i


@ray.remote
class Sensor:
    async def readings(self, n):
        for i in range(n):
            yield {"reading": i}


def main() -> None:
    ray.init(num_cpus=2)
    start = time.perf_counter()
    gen = countdown.remote(5)  # an ObjectRefGenerator: the task is still running
    for ref in gen:
        print(f"{time.perf_counter() - start:4.1f}s  got {ray.get(ref)}")
    sensor = Sensor.remote()
    print([ray.get(r) for r in sensor.readings.options(_generator_backpressure_num_objects=2).remote(3)])
    ray.shutdown()


if __name__ == "__main__":
    main()
