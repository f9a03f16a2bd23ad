"""Local `working_dir`/`py_modules` of a runtime env turned into uploaded packages.

Shared by the two places that upload: a driver (`core_worker.runtime_envs`, straight to the
GCS's KV) and the job SDK (`job_submission.sdk`, over HTTP to the dashboard, which stores the
package the same way). `localize` walks the env, packs each local path
(`runtime_env.packaging`: content hash, excludes, .gitignore, size limit) and hands the bytes
to the caller's `upload(data, uri)`; the result has gcs:// URIs in their place.

A package is stored in the KV's system namespace as chunks (`<key>:<n>`, each at most
CHUNK_BYTES, far below the frame limit) and a manifest under `<key>` written last, so a
package whose manifest exists is complete (`kv_entries` gives them in that order).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

from skate.runtime_env import packaging
from skate.runtime_env.spec import PKG_PREFIX, PKG_SCHEME, is_uri, package_key, package_uri

CHUNK_BYTES = 4 * 1024 * 1024
# The name of a package as the upload route takes it: `<prefix><hash>.zip` or, for a wheel,
# `<prefix><hash>/<file>.whl` (a wheel keeps its file name, which pip needs).
_NAME = re.compile(r"\A" + re.escape(PKG_PREFIX) + r"([0-9a-f]{24})(\.zip|/[A-Za-z0-9_.+\-]+\.whl)\Z")

Upload = Callable[[bytes, str], str]


def kv_entries(uri: str, data: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) puts that store a package: its chunks, then its manifest."""
    key = package_key(uri).encode()
    chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
    out = [(key + b":%d" % i, chunk) for i, chunk in enumerate(chunks)]
    out.append((key, json.dumps({"chunks": len(chunks), "size": len(data)}).encode()))
    return out


def uri_of_name(protocol: str, name: str) -> str:
    """The URI of a package named in the upload route; ValueError naming what is wrong."""
    if protocol + "://" != PKG_SCHEME:
        raise ValueError(f"unknown package protocol {protocol!r}: only {PKG_SCHEME[:-3]!r} is served here")
    if not _NAME.match(name):
        raise ValueError(
            f"invalid package name {name!r}: expected {PKG_PREFIX}<24 hex digits>.zip "
            f"or {PKG_PREFIX}<24 hex digits>/<name>.whl"
        )
    return PKG_SCHEME + name


def check_content(uri: str, data: bytes) -> None:
    """A package's bytes must hash to the digest in its name (else ValueError): a URI always
    names the same content, on every node."""
    match = _NAME.match(uri[len(PKG_SCHEME) :])
    if match is None:
        raise ValueError(f"{uri!r} is not a package URI")
    actual = packaging.digest(data)
    if actual != match.group(1):
        raise ValueError(f"the content of {uri} hashes to {actual}, not to the digest in its name")


def localize(raw: dict, upload: Upload) -> dict:
    """The env with local working_dir/py_modules uploaded (as gcs:// URIs) and `excludes`
    applied and dropped; other fields as given. ValueError names a bad path;
    packaging.PackageTooLargeError a tree over the size limit."""
    excludes = list(raw.get("excludes") or ())
    out: dict = {}
    for key, value in raw.items():
        if key == "excludes":
            continue
        if key == "working_dir" and value is not None:
            out[key] = working_dir(value, excludes, upload)
        elif key == "py_modules" and value is not None:
            out[key] = [py_module(m, excludes, upload) for m in value]
        else:
            out[key] = value
    return out


def working_dir(path: str, excludes: list[str], upload: Upload) -> str:
    if is_uri(path):
        package_key(path)  # only packages uploaded by Skate can be fetched
        return path
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(full):
        data, digest = packaging.pack_directory(full, excludes, what=f"working_dir {path!r}")
        return upload(data, package_uri(digest))
    if os.path.isfile(full) and full.endswith(".zip"):
        with open(full, "rb") as f:
            data = f.read()
        return upload(data, package_uri(packaging.digest(data)))
    if os.path.exists(full):
        raise ValueError(f"runtime_env['working_dir'] must be a directory or a .zip file, got {path!r}")
    raise ValueError(f"runtime_env['working_dir'] {path!r} does not exist (resolved to {full})")


def py_module(path: str, excludes: list[str], upload: Upload) -> str:
    if is_uri(path):
        package_key(path)
        return path
    full = os.path.abspath(os.path.expanduser(path.rstrip("/")))
    name = os.path.basename(full)
    if os.path.isdir(full):
        # The zip holds the package under its own name, so its unpacked root goes on sys.path.
        data, digest = packaging.pack_directory(
            full, excludes, prefix=name + "/", what=f"py_modules entry {path!r}"
        )
        return upload(data, package_uri(digest))
    if os.path.isfile(full) and full.endswith(".whl"):
        with open(full, "rb") as f:
            data = f.read()
        return upload(data, package_uri(packaging.digest(data), "/" + name))
    if os.path.isfile(full) and full.endswith(".py"):
        data, digest = packaging.pack_file(full, name)
        return upload(data, package_uri(digest))
    if os.path.exists(full):
        raise ValueError(
            f"runtime_env['py_modules'] entries must be directories, .py files or .whl files, got {path!r}"
        )
    raise ValueError(f"runtime_env['py_modules'] entry {path!r} does not exist (resolved to {full})")
