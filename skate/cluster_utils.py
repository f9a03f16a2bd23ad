"""Several nodes on one machine, for tests and experiments (Ray's `ray.cluster_utils`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from skate._api import node_resources_for
from skate._labels import check_node_labels
from skate._node import LocalNode
from skate._system_config import apply_system_config, parse
from skate.protocol import connect


class Cluster:
    """A head node plus worker nodes, each with its own raylet, workers and object store.

    The nodes belong to this process: they stop with `shutdown()` or when it exits.
    """

    def __init__(
        self,
        initialize_head: bool = False,
        connect: bool = False,
        head_node_args: dict | None = None,
        shutdown_at_exit: bool = True,
    ):
        self.head_node: LocalNode | None = None
        self.worker_nodes: list[LocalNode] = []
        self._removed: set[str] = set()
        self._system_config: dict | None = None  # the head's, for nodes added without their own
        if initialize_head:
            self.add_node(**(head_node_args or {}))
            if connect:
                import skate

                skate.init(address=self.address)

    @property
    def address(self) -> str:
        return self._head().address

    def _head(self) -> LocalNode:
        if self.head_node is None:
            raise RuntimeError("the cluster has no head node yet: add_node() first")
        return self.head_node

    @property
    def gcs_address(self) -> str:
        return self.address

    def add_node(self, wait: bool = True, **node_args: Any) -> LocalNode:
        """Start a node (the head if there is none yet) and return its handle.

        `_system_config` (Ray's tuning keys, see skate._system_config) given to the head applies
        to the cluster: later nodes take it unless they are given their own.
        """
        known = {
            "num_cpus",
            "num_gpus",
            "resources",
            "object_store_memory",
            "node_ip_address",
            "spill_dir",
            "labels",
            "_system_config",
            "storage",
            "include_dashboard",
        }
        unknown = sorted(set(node_args) - known)
        if unknown:
            raise ValueError(f"unknown node option(s) {unknown}; known: {sorted(known)}")
        labels = check_node_labels(node_args.get("labels"), "add_node(labels=...)")
        head_node = self.head_node
        head = head_node is None
        raw_config = node_args.get("_system_config")
        # The head's config was checked (and warned about) when the head was added.
        config = apply_system_config(raw_config) if raw_config is not None else parse(self._system_config)
        if head:
            self._system_config = raw_config
        node_ip = node_args.get("node_ip_address", "127.0.0.1")
        resources, store = node_resources_for(
            node_args.get("num_cpus"),
            node_args.get("num_gpus"),
            node_args.get("resources"),
            512 * 1024 * 1024
            if node_args.get("object_store_memory") is None
            else node_args["object_store_memory"],
            head=head,
            node_ip=node_ip,
        )
        node = LocalNode(
            resources=resources,
            object_store_memory=store,
            head=head,
            gcs_address=head_node.gcs_address if head_node is not None else None,
            token=head_node.token if head_node is not None else None,
            node_ip=node_ip,
            shared=True,
            spill_dir=node_args.get("spill_dir"),
            system_config=config,
            labels=labels,
            storage=node_args.get("storage") or "memory",  # the head GCS's tables (skate.gcs.storage)
            include_dashboard=head and bool(node_args.get("include_dashboard")),
            metrics_export_port=int(node_args.get("metrics_export_port") or 0),
        )
        if head:
            self.head_node = node
        else:
            self.worker_nodes.append(node)
        if wait:
            self.wait_for_nodes()
        return node

    def remove_node(self, node: LocalNode, allow_graceful: bool = True) -> None:
        """Stop a node; without grace its raylet is killed like a crashed machine."""
        if not allow_graceful:
            node.kill_raylet()
        node.shutdown()
        self._removed.add(node.node_id)
        if node is self.head_node:
            self.head_node = None
        elif node in self.worker_nodes:
            self.worker_nodes.remove(node)

    def list_all_nodes(self) -> list[LocalNode]:
        return ([self.head_node] if self.head_node else []) + list(self.worker_nodes)

    async def _alive_node_ids(self) -> set[str]:
        head = self._head()
        conn = await connect(head.gcs_address, head.token, name="cluster-utils", timeout=5)
        try:
            return {n["node_id"] for n in await conn.call("get_nodes") if n["alive"]}
        finally:
            conn.close()

    def wait_for_nodes(self, timeout: float = 30) -> None:
        """Wait until the GCS sees every node added (and none removed) as alive."""
        want = {n.node_id for n in self.list_all_nodes()}
        deadline = time.monotonic() + timeout
        while True:
            alive = asyncio.run(self._alive_node_ids())
            if want <= alive and not (alive & self._removed):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nodes not ready after {timeout} s: want {sorted(want)}, alive {sorted(alive)}"
                )
            time.sleep(0.05)

    def shutdown(self) -> None:
        for node in list(self.worker_nodes):
            node.shutdown()
        self.worker_nodes.clear()
        if self.head_node is not None:
            self.head_node.shutdown()
            self.head_node = None
