"""`skate list/get/summary/timeline` on a two-node cluster: real rows, filters and formats."""

from __future__ import annotations

import json

import pytest

import skate
from skate.cluster_utils import Cluster
from skate.scripts.cli import main
from skate.util import state
from tests.integration._cluster_helpers import node_args, run_cli
from tests.integration._helpers import wait_for


@skate.remote
def square(x):
    return x * x


@skate.remote
def fails():
    raise KeyError("missing thing")


@skate.remote(resources={"b": 1})
class Keeper:
    def ping(self):
        return "pong"


@pytest.fixture(scope="module")
def observed():
    if skate.is_initialized():
        skate.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args=node_args(num_cpus=1))
    try:
        other = cluster.add_node(**node_args(num_cpus=1, resources={"b": 1}))
        skate.init(address=cluster.address)
        assert skate.get([square.remote(i) for i in range(3)]) == [0, 1, 4]
        with pytest.raises(KeyError):
            skate.get(fails.remote())
        keeper = Keeper.remote()
        assert skate.get(keeper.ping.remote()) == "pong"

        def settled() -> bool:  # both sides' events (owner and worker) have reached the GCS
            rows = state.list_tasks(filters=[("name", "=", "fails")])
            pings = state.list_tasks(filters=[("name", "=", "Keeper.ping")])
            return (
                bool(rows)
                and rows[0]["error_type"] is not None
                and rows[0]["worker_pid"] is not None
                and bool(pings)
                and pings[0]["state"] == "FINISHED"
                and pings[0]["worker_pid"] is not None
            )

        assert wait_for(settled, timeout=15)
        yield {"cluster": cluster, "other": other, "keeper": keeper}
    finally:
        if skate.is_initialized():
            skate.shutdown()
        cluster.shutdown()


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.timeout(60)
def test_list_tasks_filtered_as_json_shows_the_error_type(observed, capsys):
    address = observed["cluster"].address
    code, out, _ = _run(
        capsys, "list", "tasks", "--filter", "state=FAILED", "--format", "json", "--address", address
    )
    assert code == 0
    rows = json.loads(out)
    assert [(r["name"], r["error_type"]) for r in rows] == [("fails", "TASK_EXECUTION_EXCEPTION")]
    code, out, _ = _run(
        capsys, "list", "tasks", "-f", "name=square", "--limit", "2", "--format", "json", "--address", address
    )
    assert code == 0 and len(json.loads(out)) == 2


@pytest.mark.timeout(60)
def test_list_actors_table_shows_node_and_state(observed, capsys):
    code, out, _ = _run(
        capsys, "list", "actors", "--filter", "class_name=Keeper", "--address", observed["cluster"].address
    )
    assert code == 0
    header, row = out.strip().splitlines()
    assert "ACTOR_ID" in header and "STATE" in header and "NODE_ID" in header
    assert "ALIVE" in row and observed["other"].node_id in row


@pytest.mark.timeout(60)
def test_list_nodes_yaml_and_detail(observed, capsys):
    pytest.importorskip("yaml")
    import yaml

    code, out, _ = _run(
        capsys,
        "list",
        "nodes",
        "--detail",
        "--format",
        "yaml",
        "--filter",
        "is_head_node!=True",
        "--address",
        observed["cluster"].address,
    )
    assert code == 0
    [node] = yaml.safe_load(out)
    assert node["node_id"] == observed["other"].node_id and node["resources_available"] is not None


@pytest.mark.timeout(60)
def test_get_actor_and_missing_ids(observed, capsys):
    address = observed["cluster"].address
    actor_id = observed["keeper"]._actor_id.hex()
    code, out, _ = _run(capsys, "get", "actors", actor_id, "--address", address)
    assert code == 0 and json.loads(out)["class_name"] == "Keeper"
    code, _, err = _run(capsys, "get", "actors", "ab" * 16, "--address", address)
    assert code == 1 and "no actor with id" in err


@pytest.mark.timeout(60)
def test_summary_tasks_and_actors(observed, capsys):
    address = observed["cluster"].address
    code, out, _ = _run(capsys, "summary", "tasks", "--format", "json", "--address", address)
    assert code == 0
    summary = json.loads(out)["summary"]
    assert summary["square"]["state_counts"] == {"FINISHED": 3} and summary["fails"]["state_counts"] == {
        "FAILED": 1
    }
    code, out, _ = _run(capsys, "summary", "actors", "--address", address)
    assert code == 0 and "Keeper" in out and "ALIVE" in out


@pytest.mark.timeout(60)
def test_timeline_writes_a_chrome_trace(observed, capsys, tmp_path):
    path = tmp_path / "trace.json"
    code, out, _ = _run(capsys, "timeline", "--output", str(path), "--address", observed["cluster"].address)
    assert code == 0 and str(path) in out
    events = json.loads(path.read_text())
    names = {e["name"] for e in events}
    assert {"square", "fails", "Keeper.ping"} <= names
    assert all(e["ph"] == "X" and e["dur"] >= 0 for e in events)
    api_path = tmp_path / "api.json"
    assert skate.timeline(str(api_path)) is None
    assert {e["name"] for e in json.loads(api_path.read_text())} >= {"square"}


@pytest.mark.timeout(90)
def test_cli_in_a_subprocess_and_usage_errors(observed):
    done = run_cli(
        "list",
        "workers",
        "--filter",
        "worker_type=DRIVER",
        "--format",
        "json",
        "--address",
        observed["cluster"].address,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 1
    bad = run_cli("list", "tasks", "--filter", "nonsense")
    assert bad.returncode == 2 and "key=value" in bad.stderr
    unknown = run_cli("list", "gizmos")
    assert unknown.returncode == 2
