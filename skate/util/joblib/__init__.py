"""joblib on a Skate cluster (Ray's `ray.util.joblib`).

    from skate.util.joblib import register_ray
    register_ray()
    with joblib.parallel_backend("ray"):   # or "skate"
        ...

The backend runs joblib's batches on a `skate.util.multiprocessing.Pool`. joblib is not a
dependency of Skate: it is imported only when a backend is registered.
"""

from __future__ import annotations

BACKEND_NAMES = ("skate", "ray")


def register_skate() -> None:
    """Register the Skate backend with joblib under the names "skate" and "ray"."""
    try:
        from joblib.parallel import register_parallel_backend
    except ImportError as exc:
        raise ImportError(
            "the Skate joblib backend needs joblib, which is not installed: pip install joblib"
        ) from exc
    from skate.util.joblib.backend import SkateBackend

    for name in BACKEND_NAMES:
        register_parallel_backend(name, SkateBackend)


def register_ray() -> None:
    """Ray's name for register_skate: registers the same backend as "ray" and "skate"."""
    register_skate()


__all__ = ["register_ray", "register_skate"]
