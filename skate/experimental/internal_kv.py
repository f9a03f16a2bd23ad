"""The cluster's internal key-value store, as `ray.experimental.internal_kv`.

Keys, values and namespaces are str (encoded as UTF-8) or bytes; results are bytes. The
store lives in the GCS, so every driver and worker of the cluster sees the same entries. A
namespace (None is the default one) keeps its keys apart from every other namespace's, and
user keys never meet Skate's own entries. Calls block until the GCS answers.
"""

from __future__ import annotations

from typing import Any

from skate import _api

__all__ = [
    "_internal_kv_del",
    "_internal_kv_exists",
    "_internal_kv_get",
    "_internal_kv_initialized",
    "_internal_kv_list",
    "_internal_kv_put",
]


def _as_bytes(value: Any, what: str, caller: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return value
    raise TypeError(f"{caller}: the {what} must be str or bytes, got {type(value).__name__}: {value!r:.80}")


def _namespace(namespace: Any, caller: str) -> bytes:
    return b"" if namespace is None else _as_bytes(namespace, "namespace", caller)


def _call(caller: str, method: str, payload: dict) -> Any:
    try:
        core = _api._core()
    except RuntimeError as exc:
        raise RuntimeError(f"{caller}: {exc}") from None
    if core.gcs is None:
        raise RuntimeError(f"{caller}: this process is not connected to the cluster's GCS")
    return core.request(core.gcs, method, payload)


def _internal_kv_initialized() -> bool:
    """Whether this process is connected to a cluster, so the store can be used."""
    return _api.is_initialized()


def _internal_kv_get(key: str | bytes, *, namespace: str | bytes | None = None) -> bytes | None:
    """The value stored at key, or None if there is none."""
    caller = "_internal_kv_get"
    payload = {"key": _as_bytes(key, "key", caller), "namespace": _namespace(namespace, caller)}
    return _call(caller, "kv_get", payload)


def _internal_kv_exists(key: str | bytes, *, namespace: str | bytes | None = None) -> bool:
    """Whether a value is stored at key."""
    caller = "_internal_kv_exists"
    payload = {"key": _as_bytes(key, "key", caller), "namespace": _namespace(namespace, caller)}
    return bool(_call(caller, "kv_exists", payload))


def _internal_kv_put(
    key: str | bytes,
    value: str | bytes,
    overwrite: bool = True,
    *,
    namespace: str | bytes | None = None,
) -> bool:
    """Store value at key; with overwrite=False an existing value is kept.

    Returns True if the key already existed before this call (Ray's polarity: with
    overwrite=False, True means nothing was written), False if this call created it.
    """
    caller = "_internal_kv_put"
    if not isinstance(overwrite, bool):
        raise TypeError(f"{caller}: overwrite must be a bool, got {type(overwrite).__name__}")
    payload = {
        "key": _as_bytes(key, "key", caller),
        "value": _as_bytes(value, "value", caller),
        "overwrite": overwrite,
        "namespace": _namespace(namespace, caller),
    }
    return not _call(caller, "kv_put", payload)


def _internal_kv_del(
    key: str | bytes, *, del_by_prefix: bool = False, namespace: str | bytes | None = None
) -> int:
    """Remove key (every key starting with it if del_by_prefix); the number of keys removed."""
    caller = "_internal_kv_del"
    payload = {
        "key": _as_bytes(key, "key", caller),
        "by_prefix": bool(del_by_prefix),
        "namespace": _namespace(namespace, caller),
    }
    return int(_call(caller, "kv_del", payload))


def _internal_kv_list(prefix: str | bytes, *, namespace: str | bytes | None = None) -> list[bytes]:
    """Every key of the namespace that starts with prefix."""
    caller = "_internal_kv_list"
    payload = {"prefix": _as_bytes(prefix, "prefix", caller), "namespace": _namespace(namespace, caller)}
    return list(_call(caller, "kv_keys", payload))
