"""Runtime environments: what a task or actor needs beyond its code (files, packages, env vars).

`RuntimeEnv` is the dict-like class of the public API (accepted wherever a `runtime_env` dict
is); the rest of the package is pure helpers shared by the driver and the raylet: merging and
hashing (`spec`), and packing local directories for upload (`packaging`).
"""

from __future__ import annotations

from typing import Any

from skate._runtime_env import validate_runtime_env

__all__ = ["RuntimeEnv", "RuntimeEnvConfig"]


class RuntimeEnvConfig(dict):
    """The `config` field: `setup_timeout_seconds` (default 600, -1 for none) and `eager_install`."""

    def __init__(self, setup_timeout_seconds: int = 600, eager_install: bool = True, **kwargs: Any):
        if kwargs:
            raise ValueError(f"RuntimeEnvConfig got unknown field(s) {sorted(kwargs)}")
        if not isinstance(setup_timeout_seconds, int) or isinstance(setup_timeout_seconds, bool):
            raise TypeError(f"setup_timeout_seconds must be an int, got {setup_timeout_seconds!r}")
        if setup_timeout_seconds <= 0 and setup_timeout_seconds != -1:
            raise ValueError(f"setup_timeout_seconds must be positive or -1, got {setup_timeout_seconds}")
        if not isinstance(eager_install, bool):
            raise TypeError(f"eager_install must be a bool, got {eager_install!r}")
        super().__init__(setup_timeout_seconds=setup_timeout_seconds, eager_install=eager_install)


class RuntimeEnv(dict):
    """A runtime environment: a dict of its fields, checked when built.

    `RuntimeEnv(env_vars={"A": "1"}, pip=["pkg"])` is the same as the dict
    `{"env_vars": {"A": "1"}, "pip": ["pkg"]}`; unknown fields or wrong types raise here.
    """

    def __init__(self, **fields: Any):
        fields = {k: v for k, v in fields.items() if v is not None}
        checked = validate_runtime_env(fields) or {}
        super().__init__(checked)

    def to_dict(self) -> dict:
        """A plain dict copy."""
        return dict(self)

    def serialize(self) -> str:
        import json

        return json.dumps(self, sort_keys=True)

    @classmethod
    def deserialize(cls, text: str) -> RuntimeEnv:
        import json

        return cls(**json.loads(text))

    def env_vars(self) -> dict:
        return dict(self.get("env_vars") or {})

    def working_dir(self) -> str:
        return self.get("working_dir", "")

    def py_modules(self) -> list:
        return list(self.get("py_modules") or [])

    def has_py_container(self) -> bool:
        return "container" in self or "image_uri" in self

    def __repr__(self) -> str:
        return f"RuntimeEnv({dict.__repr__(self)})"
