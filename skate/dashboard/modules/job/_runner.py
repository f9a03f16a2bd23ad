"""The leader of a job's process group: runs the entrypoint and ends with it, or kills it.

Started by the job supervisor as `python _runner.py WATCH_FD ENTRYPOINT` in a new session,
so the entrypoint and everything it starts share this process's group. It imports nothing
of Skate (it must start in milliseconds). Two ways out:

- the entrypoint ends: exit with its status (128 + N when a signal N ended it, as shells do);
- the supervisor is gone (its end of the pipe at WATCH_FD closed, even by SIGKILL): kill
  the whole group, so no job outlives the cluster.

SIGTERM is ignored here (the supervisor sends it to the whole group to stop the job): the
entrypoint decides how to end, and this process stays to report how it ended.
"""

import os
import signal
import subprocess
import sys
import threading


def _watch(fd: int) -> None:
    try:
        while os.read(fd, 1):
            pass
    except OSError:
        pass
    os.killpg(0, signal.SIGKILL)


def main() -> None:
    watch_fd, entrypoint = int(sys.argv[1]), sys.argv[2]
    # The child is started first so it keeps SIGTERM's default action (an ignored signal stays
    # ignored across exec); then this process ignores it.
    child = subprocess.Popen(["/bin/sh", "-c", entrypoint])
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_watch, args=(watch_fd,), daemon=True).start()
    code = child.wait()
    sys.exit(128 - code if code < 0 else code)


if __name__ == "__main__":
    main()
