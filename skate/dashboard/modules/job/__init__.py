"""Jobs: the REST API (`routes`), the dashboard's job manager and the per-job supervisor actor."""

from __future__ import annotations

from skate.dashboard.modules.job.routes import setup

__all__ = ["setup"]
