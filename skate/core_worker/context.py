"""The process's current core worker (None when skate is not initialized).

`auto_init` is set by the public API (`skate._api`) to start a local cluster on first use,
as Ray does: the modules that need it (remote functions, actor classes) call it through
here instead of importing the API module, so imports keep pointing one way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

current: Any = None

auto_init: Callable[[], Any] | None = None


def current_or_init() -> Any:
    """The current core worker, starting a local cluster first if there is none."""
    core = current
    if core is None and auto_init is not None:
        auto_init()
        core = current
    if core is None:
        raise RuntimeError("skate is not initialized: call skate.init() first")
    return core
