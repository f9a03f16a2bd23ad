"""Starting a local cluster on first use, as Ray does, unless the environment says not to.

The API module registers `init` as `context.auto_init` when it loads, so that the modules
calling this (remote functions, actor classes) need not import it (imports point one way).

`.remote()`, put, get, wait, cancel, kill, get_actor, get_gpu_ids and get_runtime_context
call `current_or_init()`: with no cluster yet they run `init()` (a private local cluster). With
SKATE_ENABLE_AUTO_CONNECT=0 or RAY_ENABLE_AUTO_CONNECT=0 they raise NotInitializedError
instead, naming the variable, so a program that must not start its own cluster fails loudly.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from skate.core_worker import context
from skate.exceptions import NotInitializedError

AUTO_CONNECT_VARS = ("SKATE_ENABLE_AUTO_CONNECT", "RAY_ENABLE_AUTO_CONNECT")
_lock = threading.Lock()


def _disabled_by() -> str | None:
    """The variable that turns auto-init off, if one does."""
    for var in AUTO_CONNECT_VARS:
        if os.environ.get(var, "") == "0":
            return var
    return None


def not_initialized(why: str | None = None) -> NotInitializedError:
    message = "Skate has not been started yet. You can start it with 'init()'."
    if why:
        message += f" It does not start on first use because {why}=0."
    return NotInitializedError(message)


def current_or_init() -> Any:
    """The current core worker; a new local cluster's if there is none and auto-init is on."""
    core = context.current
    if core is not None:
        return core
    var = _disabled_by()
    if var is not None:
        raise not_initialized(var)
    if context.auto_init is None:  # set when skate._api is imported, which `import skate` does
        raise not_initialized()
    with _lock:
        if context.current is None:
            context.auto_init()
    return context.current
