"""The process's current core worker (None when skate is not initialized)."""

from __future__ import annotations

from typing import Any

current: Any = None
