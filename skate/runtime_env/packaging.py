"""Packing a local directory into a zip named by its content, for upload with a runtime env.

Deterministic: files in sorted order, fixed timestamps and permissions, so the same tree gives
the same bytes and the same hash (uploaded once, cached once per node). Files that `excludes`
or a `.gitignore` of the tree exclude are left out (gitignore syntax, the last matching rule
wins), and so is `.git`. A tree over the size limit is refused with a message naming its
biggest files, before anything is compressed.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import zipfile
from dataclasses import dataclass

DEFAULT_MAX_PACKAGE_BYTES = 512 * 1024 * 1024
_EPOCH = (1980, 1, 1, 0, 0, 0)
_ALWAYS_SKIPPED = {".git"}


def max_package_bytes() -> int:
    """The package size limit: SKATE_RUNTIME_ENV_MAX_PACKAGE_BYTES (read at each use, so a
    process can change it), else 512 MiB."""
    return int(os.environ.get("SKATE_RUNTIME_ENV_MAX_PACKAGE_BYTES") or DEFAULT_MAX_PACKAGE_BYTES)


class PackageTooLargeError(ValueError):
    """A working_dir or py_module is larger than the package limit."""


@dataclass
class _Rule:
    base: str  # the directory (relative to the root, "" for the root) the rule is scoped to
    regex: re.Pattern
    negate: bool
    dir_only: bool


def _translate(pattern: str) -> str:
    """A gitignore glob as a regex over '/'-separated relative paths."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("/.*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def parse_rules(lines: list[str], base: str = "") -> list[_Rule]:
    """Rules from gitignore-syntax lines, scoped to directory `base` of the tree."""
    rules = []
    for raw in lines:
        line = raw.rstrip("\n").rstrip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        if line.startswith("\\"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/")
        body = _translate(line)
        regex = re.compile(("" if anchored else "(?:.*/)?") + body + r"\Z", re.DOTALL)
        rules.append(_Rule(base, regex, negate, dir_only))
    return rules


def is_excluded(rules: list[_Rule], rel: str, is_dir: bool) -> bool:
    """Whether the last rule matching `rel` (a path relative to the root) excludes it."""
    excluded = False
    for rule in rules:
        if rule.dir_only and not is_dir:
            continue
        if rule.base:
            if not rel.startswith(rule.base + "/"):
                continue
            sub = rel[len(rule.base) + 1 :]
        else:
            sub = rel
        if rule.regex.match(sub):
            excluded = not rule.negate
    return excluded


def collect_files(root: str, excludes: list[str] | None = None) -> list[tuple[str, str, int]]:
    """The files of the tree to pack: (path relative to root, absolute path, size), sorted."""
    rules = parse_rules(list(excludes or ()))
    out: list[tuple[str, str, int]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir
        if ".gitignore" in filenames:
            try:
                with open(os.path.join(dirpath, ".gitignore"), encoding="utf-8", errors="replace") as f:
                    rules = rules + parse_rules(f.readlines(), rel_dir)
            except OSError:
                pass
        keep = []
        for name in sorted(dirnames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if name not in _ALWAYS_SKIPPED and not is_excluded(rules, rel, True):
                keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if is_excluded(rules, rel, False):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue  # a dangling link
            if stat.S_ISREG(st.st_mode):
                out.append((rel, path, st.st_size))
    out.sort()
    return out


def check_size(what: str, files: list[tuple[str, str, int]], limit: int) -> None:
    """Refuse a package whose files add up to more than `limit`, naming the biggest."""
    total = sum(size for _, _, size in files)
    if total <= limit:
        return
    biggest = sorted(files, key=lambda f: -f[2])[:5]
    names = ", ".join(f"{rel} ({_human(size)})" for rel, _, size in biggest)
    raise PackageTooLargeError(
        f"{what} is {_human(total)}, over the runtime_env package limit of {_human(limit)} "
        f"(SKATE_RUNTIME_ENV_MAX_PACKAGE_BYTES). Its biggest files: {names}. Leave files out with "
        "runtime_env['excludes'] or a .gitignore."
    )


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def zip_files(files: list[tuple[str, str, int]], prefix: str = "") -> bytes:
    """A deterministic zip of the files, each stored under `prefix` + its relative path."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for rel, path, _ in files:
            info = zipfile.ZipInfo(prefix + rel, date_time=_EPOCH)
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                zf.writestr(info, f.read())
    return buf.getvalue()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


def pack_directory(
    root: str,
    excludes: list[str] | None = None,
    prefix: str = "",
    limit: int | None = None,
    what: str | None = None,
) -> tuple[bytes, str]:
    """Zip a directory (minus what is excluded): its bytes and content hash."""
    files = collect_files(root, excludes)
    check_size(what or f"the directory {root}", files, max_package_bytes() if limit is None else limit)
    data = zip_files(files, prefix)
    return data, digest(data)


def pack_file(path: str, arcname: str, limit: int | None = None) -> tuple[bytes, str]:
    """Zip one file (a single-module py_module): its bytes and content hash."""
    size = os.path.getsize(path)
    limit = max_package_bytes() if limit is None else limit
    check_size(f"the file {path}", [(arcname, path, size)], limit)
    data = zip_files([(arcname, path, size)])
    return data, digest(data)
