"""The command line of GCS fault tolerance: `skate status` says when the GCS restarted,
`skate memory --stats` shows its tables, and `skate start --head` refuses a bad storage."""

from __future__ import annotations

import pytest

import skate
from skate.cluster_utils import Cluster
from tests.integration._cluster_helpers import force_stop_cli, free_port, node_args, run_cli

pytestmark = pytest.mark.timeout(120)


def test_status_and_memory_stats_show_the_gcs():
    if skate.is_initialized():
        skate.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1, storage="sqlite"))
    try:
        status = run_cli("status", "--address", cluster.address)
        assert status.returncode == 0, status.stderr
        assert "storage: sqlite:" in status.stdout and "never restarted" in status.stdout
        cluster.head_node.kill_gcs()
        cluster.head_node.restart_gcs()
        status = run_cli("status", "--address", cluster.address)
        assert "restarted 1 time(s)" in status.stdout, status.stdout
        stats = run_cli("memory", "--stats", "--address", cluster.address)
        assert stats.returncode == 0, stats.stderr
        assert "tables:" in stats.stdout and "KV entries" in stats.stdout, stats.stdout
    finally:
        cluster.shutdown()


@pytest.mark.parametrize(
    "storage, message",
    [
        ("redis://127.0.0.1:{port}", "cannot reach Redis at redis://127.0.0.1"),
        ("mysql://x", "is not a GCS storage"),
    ],
)
def test_start_head_refuses_a_bad_storage(storage, message):
    try:
        result = run_cli(
            "start",
            "--head",
            "--port",
            str(free_port()),
            "--num-cpus",
            "1",
            "--storage",
            storage.format(port=free_port()),
        )
        assert result.returncode != 0
        assert message in result.stderr, result.stderr
    finally:
        force_stop_cli()


def test_start_head_refuses_a_corrupt_sqlite_file(tmp_path):
    path = tmp_path / "gcs.db"
    path.write_bytes(b"garbage" * 50)
    try:
        result = run_cli(
            "start", "--head", "--port", str(free_port()), "--num-cpus", "1", "--storage", f"sqlite:{path}"
        )
        assert result.returncode != 0
        assert "corrupt or not an SQLite database" in result.stderr, result.stderr
        assert path.read_bytes() == b"garbage" * 50
    finally:
        force_stop_cli()
