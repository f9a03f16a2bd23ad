"""The worker template: imports what workers need once, then forks a worker per request.

Talks to its raylet by lines on stdin/stdout:
    in:  "fork WORKER_ID [LAYOUT]" | "kill PID"
         (LAYOUT: a runtime env's layout, urlsafe-base64 JSON, applied by the child first)
    out: "forked WORKER_ID PID" | "exit PID CODE"
End of stdin (the raylet is gone) kills every worker and ends the zygote.

A worker of a pip/uv env whose packages this template has already imported (numpy in another
version, say) cannot use the template's copies: that child execs a fresh interpreter
(`--worker`, same pid, so the zygote still reaps it), where the env's site directory comes
first. SKATE_RUNTIME_ENV_FRESH_WORKERS=1 makes every pip/uv env worker start fresh.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import sys
from typing import Any

from skate import _gc_tuning
from skate._secure_files import read_token


def _set_parent_death_signal() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


FRESH_WORKERS_VAR = "SKATE_RUNTIME_ENV_FRESH_WORKERS"


def main() -> None:
    if "--worker" in sys.argv[1:]:
        _fresh_worker()
    # The raylet passes the session's details in the environment (argv is public in `ps`);
    # forked workers get them as a dict, not from the environment.
    info = json.loads(os.environ.pop("SKATE_ZYGOTE_INFO"))
    info["token"] = read_token(info["session_dir"])
    _set_parent_death_signal()
    # The public API too: `skate` loads it on first use, and user code in a worker (and the
    # classes and functions it unpickles) reaches for it at once; forked workers get it free.
    import skate
    from skate.core_worker import worker_main  # noqa: F401  (warm the imports)

    for name in ("remote", "ActorClass", "RemoteFunction", "get_runtime_context", "util"):
        getattr(skate, name)
    _gc_tuning.tune(own_process=True)  # forked workers inherit both: shared pages stay shared

    stdin_fd = sys.stdin.fileno()
    out = os.fdopen(sys.stdout.fileno(), "w", buffering=1)
    children: dict[int, str] = {}
    buf = b""
    warmed_extra = False
    me = os.getpid()
    while True:
        ready, _, _ = select.select([stdin_fd], [], [], 0.1)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.pop(pid, None)
            out.write(f"exit {pid} {os.waitstatus_to_exitcode(status)}\n")
        if not ready:
            if not warmed_extra:
                warmed_extra = True
                try:  # later forks get numpy for free; the first ones did not wait for it
                    import numpy  # noqa: F401
                except ImportError:
                    pass
            continue
        chunk = os.read(stdin_fd, 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            parts = line.decode().split()
            if not parts:
                continue
            if parts[0] == "fork":
                pid = os.fork()
                if pid == 0:
                    _child(info, parts[1], me, parts[2] if len(parts) > 2 else None)
                children[pid] = parts[1]
                out.write(f"forked {parts[1]} {pid}\n")
            elif parts[0] == "kill":
                try:
                    os.kill(int(parts[1]), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in list(children):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    os._exit(0)


def needs_fresh_interpreter(layout: dict, loaded: Any, force: bool = False) -> bool:
    """Whether an env's workers must start from a fresh interpreter: its pip/uv packages
    include a module already imported here (`loaded`), or `force` for any pip/uv env."""
    modules = layout.get("modules") or ()
    return bool(modules) and (force or any(name in loaded for name in modules))


def _exec_fresh(info: dict) -> None:
    """Replace this forked child by a fresh interpreter running the worker (same pid)."""
    import skate

    home = os.path.dirname(os.path.dirname(os.path.abspath(skate.__file__)))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(([old] if old else []) + [home])  # skate, wherever cwd is
    os.environ["SKATE_WORKER_INFO"] = json.dumps({k: v for k, v in info.items() if k != "token"})
    argv = [sys.executable, "-m", "skate.raylet.zygote", "--worker", "--session-dir", info["session_dir"]]
    os.execv(sys.executable, argv)


def _fresh_worker() -> None:
    """The entry point of a worker exec'ed by `_exec_fresh`."""
    _run_then_exit(_start_fresh_worker)


def _start_fresh_worker() -> None:
    info = json.loads(os.environ.pop("SKATE_WORKER_INFO"))
    info["token"] = read_token(info["session_dir"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from skate.core_worker import worker_main

    worker_main.main(info)


def _run_then_exit(body: Any) -> None:
    """Run a worker's body and leave the process with its exit code, whatever happens: a
    forked child never returns into the zygote's loop, and skips the zygote's atexit."""
    code = 0
    try:
        body()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _apply_runtime_env(info: dict, encoded: str) -> tuple[dict, dict]:
    """Enter a runtime env (this worker serves only it): env vars, sys.path entries in front
    (also in PYTHONPATH, for the processes it starts), the working directory."""
    import base64
    import importlib

    layout = json.loads(base64.urlsafe_b64decode(encoded))
    os.environ.update(layout.get("env_vars") or {})
    paths = list(layout.get("paths") or ())
    if paths:
        sys.path[0:0] = paths
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(paths + ([old] if old else []))
        importlib.invalidate_caches()
    if layout.get("bin"):
        os.environ["PATH"] = os.pathsep.join([*layout["bin"], os.environ.get("PATH", "")])
    if layout.get("cwd"):
        os.chdir(layout["cwd"])
    return dict(info, runtime_env=layout.get("env")), layout


def _child(info: dict, worker_id: str, zygote_pid: int, runtime_env: str | None = None) -> None:
    _run_then_exit(lambda: _start_child(info, worker_id, zygote_pid, runtime_env))


def _start_child(info: dict, worker_id: str, zygote_pid: int, runtime_env: str | None) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    # No PR_SET_PDEATHSIG here: once the zygote has imported numpy, its BLAS threads make
    # the "parent thread" of a fork unreliable and workers were killed at random. A worker
    # exits when its raylet connection drops, and the zygote kills its children at EOF.
    if os.getppid() != zygote_pid:
        os._exit(1)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from skate.core_worker import worker_main

    info = dict(info, worker_id=worker_id)
    if runtime_env is not None:
        info, layout = _apply_runtime_env(info, runtime_env)
        if needs_fresh_interpreter(layout, sys.modules, os.environ.get(FRESH_WORKERS_VAR) == "1"):
            _exec_fresh(info)

    worker_main.main(info)


if __name__ == "__main__":
    main()
