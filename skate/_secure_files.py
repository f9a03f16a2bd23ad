"""Private files and directories: created for this user only, checked on every use.

Session directories hold the cluster token and the Unix sockets, so a directory another local
user planted or can write into must never be used: each directory and secret file is checked
(not a symbolic link, owned by this user, closed to other users) every time it is opened.
"""

from __future__ import annotations

import os
import stat

from skate.exceptions import UnsafePathError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def check_private(path: str, st: os.stat_result, *, allow_group_read: bool = False) -> None:
    """Raise UnsafePathError unless `st` (an lstat/fstat of `path`) is ours and private."""
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{path} is a symbolic link; Skate refuses to follow it")
    if st.st_uid != os.getuid():
        raise UnsafePathError(
            f"{path} belongs to user id {st.st_uid}, not to this user ({os.getuid()}): refusing to use it"
        )
    forbidden = 0o022 if allow_group_read else 0o077
    if stat.S_IMODE(st.st_mode) & forbidden:
        fix = "go-w" if allow_group_read else "700" if stat.S_ISDIR(st.st_mode) else "600"
        raise UnsafePathError(
            f"{path} has mode {stat.S_IMODE(st.st_mode):o}, open to other users; "
            f"make it private (chmod {fix})"
        )


def private_dir(
    path: str, *, create: bool = True, fix_mode: bool = False, allow_group_read: bool = False
) -> str:
    """Make sure `path` is a directory of ours that no other user can enter (or, with
    allow_group_read, write into): created 0700 if missing; with fix_mode a directory of ours
    that is too open is tightened to 0700."""
    if create:
        try:
            os.makedirs(path, mode=0o700)
        except FileExistsError:
            pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{path} is not a directory")
    ours = not stat.S_ISLNK(st.st_mode) and st.st_uid == os.getuid()
    if fix_mode and ours and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
        st = os.lstat(path)
    check_private(path, st, allow_group_read=allow_group_read)
    return path


def write_private(path: str, data: bytes, *, exclusive: bool = True) -> None:
    """Write a 0600 file; never through a symbolic link, and (exclusive) never over a file."""
    flags = os.O_WRONLY | os.O_CREAT | _NOFOLLOW | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        check_private(path, os.fstat(f.fileno()))
        f.write(data)


def open_private_append(path: str) -> int:
    """A 0600 file opened for appending (a log), not through a symbolic link; its descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW, 0o600)
    try:
        check_private(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private(path: str) -> bytes:
    """Read a secret file (the token), refusing one that is a link, not ours, or readable by others."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        check_private(path, os.fstat(f.fileno()))
        return f.read()


def read_token(session_dir: str) -> bytes:
    """The cluster token of a session: a 0600 file of ours in a private directory."""
    check_private(session_dir, os.lstat(session_dir))
    return read_private(os.path.join(session_dir, "token")).strip()
