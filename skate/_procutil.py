"""Small process helpers shared by the cluster's processes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


def watch_parent_pipe(loop: asyncio.AbstractEventLoop, fd: int, on_gone: Callable[[], None]) -> None:
    """Call `on_gone` when the pipe from the process that started us reaches end of file.

    The starter keeps the write end open and never writes; if it dies, even by SIGKILL,
    the kernel closes it and we see EOF.
    """

    def readable() -> None:
        try:
            data = os.read(fd, 1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            on_gone()

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
