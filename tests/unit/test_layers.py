"""Imports point one way: public API -> I/O shells -> pure state machines -> foundation.

Every module of the package is given a layer here (by the longest matching name prefix); a
module may import its own layer or lower ones, never a higher one, and no module may reach
itself through imports (function-local imports count too: they are still dependencies).
A new module fails this test until it is given a layer: decide where it belongs.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import skate

PACKAGE_DIR = pathlib.Path(skate.__file__).parent

FOUNDATION, STATE_MACHINES, SHELLS, API = 0, 1, 2, 3
LAYER_NAMES = {0: "foundation", 1: "pure state machines", 2: "I/O shells", 3: "public API"}

LAYERS: dict[str, int] = {
    # foundation: ids, config, errors, serialization, the wire, value types
    "skate._ids": FOUNDATION,
    "skate._id_types": FOUNDATION,
    "skate._config": FOUNDATION,
    "skate._system_config": FOUNDATION,
    "skate.exceptions": FOUNDATION,
    "skate._serialization": FOUNDATION,
    "skate.protocol": FOUNDATION,
    "skate._procutil": FOUNDATION,
    "skate._secure_files": FOUNDATION,
    "skate._log_files": FOUNDATION,
    "skate._options": FOUNDATION,
    "skate._bundles": FOUNDATION,
    "skate._process_memory": FOUNDATION,  # reads a process's memory from the OS (psutil)
    "skate._gc_tuning": FOUNDATION,
    "skate._event_loop": FOUNDATION,
    "skate._labels": FOUNDATION,
    "skate._signature": FOUNDATION,
    "skate._runtime_env": FOUNDATION,
    "skate.runtime_env": FOUNDATION,
    "skate.object_ref": FOUNDATION,
    "skate.object_ref_generator": FOUNDATION,
    "skate.types": FOUNDATION,
    "skate.util.scheduling_strategies": FOUNDATION,
    "skate.core_worker.context": FOUNDATION,
    "skate.core_worker.call_context": FOUNDATION,
    "skate.client.address": FOUNDATION,
    "skate.client.transfer": FOUNDATION,
    "skate._state_query": FOUNDATION,
    "skate._task_states": FOUNDATION,
    # pure state machines: decisions with no I/O
    "skate.core_worker.reference_counter": STATE_MACHINES,
    "skate.core_worker.memory_store": STATE_MACHINES,
    "skate.core_worker.task_manager": STATE_MACHINES,
    "skate.core_worker.lease_pool": STATE_MACHINES,
    "skate.core_worker.log_budget": STATE_MACHINES,
    "skate.core_worker.generator_state": STATE_MACHINES,
    "skate.raylet.scheduler": STATE_MACHINES,
    "skate.raylet.resources": STATE_MACHINES,
    "skate.raylet.arena": STATE_MACHINES,
    "skate.raylet.object_store": STATE_MACHINES,
    "skate.raylet.memory_monitor": STATE_MACHINES,
    "skate.raylet.copies": STATE_MACHINES,
    "skate.gcs.placement": STATE_MACHINES,
    "skate.gcs.kv_store": STATE_MACHINES,
    "skate.gcs.pg_scheduler": STATE_MACHINES,
    "skate._job_state": STATE_MACHINES,
    "skate._memory_accounting": STATE_MACHINES,  # the memory report's arithmetic
    "skate.client.refs": STATE_MACHINES,
    "skate.raylet.runtime_env_cache": STATE_MACHINES,
    "skate.core_worker.task_events": STATE_MACHINES,
    "skate.gcs.task_event_store": STATE_MACHINES,
    "skate.dashboard.auth": STATE_MACHINES,  # who may use the dashboard: a pure decision
    "skate.raylet.metrics_http": STATE_MACHINES,  # what the node's metrics endpoint answers
    # I/O shells: processes and the core worker
    "skate.core_worker": SHELLS,
    "skate.raylet": SHELLS,
    "skate.gcs": SHELLS,
    "skate.gcs.storage": SHELLS,  # GCS tables in memory, an SQLite file or Redis (file and network I/O)
    "skate._node": SHELLS,
    # the simulated large cluster (issue 19): drives the real GCS server object (a shell) with
    # fake in-process connections; it opens no socket, thread or process
    "skate._sim_cluster": SHELLS,
    # the dashboard is a process of its own, like the GCS and the raylet: its server is a shell;
    # its entry point and route modules use the public API (the job manager is a driver)
    "skate.dashboard": SHELLS,
    "skate.client.core": SHELLS,  # the client process's stand-in for the core worker
    "skate.client.server": SHELLS,  # the client server process on the head
    # public API, tools and the command line
    "skate": API,
    "skate._api": API,
    "skate._auto_init": API,
    "skate.actor": API,
    "skate.remote_function": API,
    "skate.runtime_context": API,
    "skate.util": API,
    "skate.util.multiprocessing": API,  # a multiprocessing.Pool on actors
    "skate.util.joblib": API,  # the joblib backend (imports joblib only when registered)
    "skate.util.check_serialize": API,  # inspect_serializability
    "skate.util.serialization": API,  # register_serializer (the hook is in _serialization)
    "skate.experimental": API,
    "skate.cluster_utils": API,
    "skate.scripts": API,
    "skate._microbenchmark": API,
    "skate.job_submission": API,
    "skate.dashboard.main": API,
    "skate.dashboard.modules": API,
    "skate._client_microbenchmark": API,
    "skate._scale_benchmark": API,  # issue 19: a benchmark program, Skate or Ray through the public API
    "skate.client": API,  # the builder and connect (the package's __init__)
    "skate.client.proxy": API,  # a client session's driver process: uses the public API
    # The worker template preloads everything a forked worker may touch, the public API
    # included: an entry point, at the top like the other programs.
    "skate.raylet.zygote": API,
}


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}


def _imports(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """The skate modules `name` imports (anywhere in the file)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in known else base)
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("skate") and target != name:
                out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    # A package's __init__ runs before its submodules: importing skate.x.y also imports
    # skate and skate.x, but that edge is Python's, not a design decision; leave it out.
    return graph


def layer_of(name: str) -> int | None:
    if name == "skate":
        return API
    best = None
    for prefix, layer in LAYERS.items():
        if (
            prefix != "skate"
            and (name == prefix or name.startswith(prefix + "."))
            and (best is None or len(prefix) > len(best[0]))
        ):
            best = (prefix, layer)
    return best[1] if best else None


def test_every_module_has_a_layer():
    missing = sorted(name for name in _modules() if layer_of(name) is None)
    assert not missing, f"give these modules a layer in tests/unit/test_layers.py: {missing}"


def test_imports_point_down():
    bad = []
    for name, targets in _graph().items():
        mine = layer_of(name)
        for target in targets:
            theirs = layer_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                bad.append(f"{name} ({LAYER_NAMES[mine]}) imports {target} ({LAYER_NAMES[theirs]})")
    assert not bad, "imports pointing up:\n" + "\n".join(sorted(bad))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize(
    "graph,expected",
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_cycle_finder(graph, expected):
    assert _cycles(graph) == expected


def test_layer_check_catches_an_upward_import():
    assert layer_of("skate.core_worker.task_manager") == STATE_MACHINES
    assert layer_of("skate.core_worker.submitter") == SHELLS
    assert layer_of("skate.actor") == API
    assert layer_of("skate.core_worker.task_manager") < layer_of("skate.core_worker.submitter")
