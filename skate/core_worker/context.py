"""The process's current core worker (None when skate is not initialized).

`auto_init` is set by the public API (`skate._api`) to start a local cluster on first use,
as Ray does (see `skate._auto_init`): the modules that need it call it through here instead
of importing the API module, so imports keep pointing one way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

current: Any = None

auto_init: Callable[[], Any] | None = None
