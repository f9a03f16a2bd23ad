"""The joblib parallel backend: joblib's batches run on a `skate.util.multiprocessing.Pool`.

Imported only by `register_skate()` (it imports joblib). Behaves like joblib's
multiprocessing backend (auto-batching, n_jobs=1 runs in this process, the pool is rebuilt
after an error), except that n_jobs=-1 means every CPU of the cluster, not of this machine,
and the pool's actors may run on any node.
"""

from __future__ import annotations

from typing import Any

from joblib._parallel_backends import (
    AutoBatchingMixin,
    FallbackToBackend,
    ParallelBackendBase,
    PoolManagerMixin,
    SequentialBackend,
)

from skate.util.multiprocessing.pool import Pool


def _cluster_cpus() -> int:
    """The cluster's CPUs, starting a local cluster first if none is connected (as Ray does)."""
    from skate import _api

    if not _api.is_initialized():
        _api.init()
    return int(_api.cluster_resources().get("CPU", 0))


class SkateBackend(PoolManagerMixin, AutoBatchingMixin, ParallelBackendBase):
    """joblib backend "skate" (also registered as "ray").

    ray_remote_args (to parallel_backend or Parallel) sets the options of the pool's actors.
    """

    supports_retrieve_callback = True
    supports_return_generator = False
    supports_timeout = True
    uses_threads = False

    def __init__(
        self,
        nesting_level: int | None = None,
        inner_max_num_threads: int | None = None,
        ray_remote_args: dict | None = None,
        **kwargs: Any,
    ):
        self.ray_remote_args = ray_remote_args
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads, **kwargs)

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """n_jobs as a number of actors: negative counts back from the cluster's CPUs."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            return max(_cluster_cpus() + 1 + n_jobs, 1)
        return n_jobs

    def configure(
        self,
        n_jobs: int = 1,
        parallel: Any = None,
        prefer: Any = None,
        require: Any = None,
        ray_remote_args: dict | None = None,
        **unused: Any,
    ) -> int:
        """Start the pool; the number of jobs that run at once."""
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self._pool = Pool(n_jobs, ray_remote_args=ray_remote_args or self.ray_remote_args)
        self.parallel = parallel
        return n_jobs

    def terminate(self) -> None:
        """Stop the pool (joblib calls this at the end of a Parallel call or on an error)."""
        super().terminate()
        self.reset_batch_stats()
