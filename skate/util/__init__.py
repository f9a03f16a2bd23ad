"""Utilities around the core API (Ray's `ray.util`)."""

from skate.util import scheduling_strategies

__all__ = ["scheduling_strategies"]
