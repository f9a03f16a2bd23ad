"""multiprocessing.Pool and joblib on a Skate cluster, with the programs unchanged.

Run with: python examples/pool_joblib.py   (the joblib part needs `pip install joblib`)
"""

import threading

import skate as ray
from skate.util import inspect_serializability
from skate.util.multiprocessing import Pool


def square(x):
    return x * x


def main() -> None:
    ray.init(num_cpus=2)

    # A drop-in for multiprocessing.Pool: the pool's processes are actors.
    with Pool() as pool:  # as many actors as the cluster has CPUs
        print("map:", pool.map(square, range(10)))
        print("imap_unordered:", sorted(pool.imap_unordered(square, range(5))))
        result = pool.apply_async(square, (12,), callback=lambda v: print("callback got", v))
        print("apply_async:", result.get(timeout=30))
        try:
            pool.apply(int, ("not a number",))
        except ValueError as exc:  # the function's own exception type
            print("error from the pool:", exc)

    # joblib: register the backend once, then use it by name ("ray" or "skate").
    try:
        import joblib
    except ImportError:
        print("joblib is not installed: skipping the joblib part")
    else:
        from skate.util.joblib import register_ray

        register_ray()
        with joblib.parallel_backend("ray"):
            print("joblib:", joblib.Parallel()(joblib.delayed(square)(i) for i in range(8)))

    # Why does something fail to serialize? The culprit, with the path to it.
    lock = threading.Lock()

    def uses_lock():
        return lock

    ok, failures = inspect_serializability(uses_lock, name="uses_lock")
    print("serializable:", ok, "culprits:", [f.name for f in failures])
    ray.shutdown()


if __name__ == "__main__":
    main()
