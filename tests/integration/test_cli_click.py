"""The click-based `skate` command keeps argparse's verbs, flags, usage errors and exit codes."""

from __future__ import annotations

import os
import re

import click
import pytest

from skate.scripts import cli as cli_module
from tests.integration._cluster_helpers import run_cli, session_dirs, temp_root

VERBS = {
    "start",
    "stop",
    "status",
    "memory",
    "microbenchmark",
    "job",
    "list",
    "get",
    "summary",
    "timeline",
    "logs",
}

# Every flag of every verb, with a piece of its help text (None: the flag has no help text).
FLAGS = {
    "start": {
        "--head": "GCS plus a raylet",
        "--address": "to join its cluster",
        "--port": "(default 6379)",
        "--node-ip-address": "other nodes reach this one at",
        "--listen-address": "address to bind services to",
        "--num-cpus": None,
        "--num-gpus": None,
        "--resources": "custom resources as JSON",
        "--object-store-memory": "bytes",
        "--token": "cluster token when joining",
        "--block": "stay in the foreground",
    },
    "stop": {"--force": "kill at once"},
    "job": {},  # sub-verbs: tests/integration/test_jobs_cli.py
    "status": {"--address": "GCS address host:port"},
    "memory": {"--address": "GCS address host:port"},
    "list": {"--filter": "key=value or key!=value", "--limit": None, "--detail": None, "--format": None},
    "get": {"--format": None, "--address": "GCS address host:port"},
    "summary": {"--format": None, "--address": "GCS address host:port"},
    "timeline": {"--output": "file to write", "--address": "GCS address host:port"},
    "logs": {
        "--node-id": "unique prefix",
        "--actor-id": "actor's worker",
        "--task-id": "ran this task",
        "--err": "stderr",
        "--tail": "last N lines",
        "--follow": "keep printing",
        "--address": "GCS address host:port",
    },
    "microbenchmark": {
        "--filter": "only metrics whose name contains",
        "--seconds": "length of one timed round",
        "--rounds": "timed rounds per metric",
        "--num-cpus": "CPUs of the local cluster",
    },
}


def _assert_usage_error(out, *needles: str) -> None:
    """argparse's shape: exit status 2, `usage:` then `skate ...: error: ...`, no traceback."""
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert out.stderr.startswith("usage: skate"), out.stderr
    assert re.search(r"^skate( \w+)?: error: ", out.stderr, flags=re.M), out.stderr
    assert "Traceback" not in out.stderr
    for needle in needles:
        assert needle in out.stderr, out.stderr


def test_help_lists_every_verb():
    for flag in ("--help", "-h"):
        out = run_cli(flag, timeout=30)
        assert out.returncode == 0, out.stderr
        listed = set(re.findall(r"^  (\w+)\s", out.stdout.split("Commands:", 1)[1], flags=re.M))
        assert listed == VERBS, out.stdout


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_verb_help_lists_every_flag_with_its_text(verb):
    out = run_cli(verb, "--help", timeout=30)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # help lines wrap
    for flag, help_text in FLAGS[verb].items():
        assert flag in text, (flag, out.stdout)
        if help_text is not None:
            assert help_text in text, (flag, out.stdout)


def test_every_verb_registered_on_one_group_from_its_own_module():
    assert set(cli_module.cli.commands) == VERBS
    modules = {cmd.callback.__module__ for cmd in cli_module.cli.commands.values()}
    assert modules == set(cli_module.VERB_MODULES)


def test_start_head_and_address_together_is_refused():
    out = run_cli("start", "--head", "--address", "127.0.0.1:1", "--num-cpus", "1", timeout=30)
    _assert_usage_error(out, "--head", "--address", "not both")
    assert session_dirs(temp_root()) == []


@pytest.mark.parametrize(
    "args, needle",
    [
        ((), "command is required"),
        (("no-such-verb",), "no-such-verb"),
        (("start", "--port", "many"), "--port"),
        (("start", "--head", "--num-cpus", "lots"), "--num-cpus"),
        (("start", "--object-store-memory", "1.5"), "--object-store-memory"),
        (("start", "--port"), "--port"),
        (("stop", "--no-such-flag"), "--no-such-flag"),
        (("microbenchmark", "--rounds", "x"), "--rounds"),
        (("status", "extra"), "extra"),
    ],
)
def test_bad_usage_exits_2_with_usage(args, needle):
    _assert_usage_error(run_cli(*args, timeout=30), needle)
    assert session_dirs(temp_root()) == []


def test_main_in_process_returns_exit_codes(capsys):
    assert cli_module.main(["start", "--head", "--address", "x:1"]) == 2
    assert "not both" in capsys.readouterr().err
    assert cli_module.main(["stop"]) == 0
    assert "no Skate nodes were running" in capsys.readouterr().out
    assert cli_module.main(["status", "--address", "127.0.0.1:1"]) == 1
    assert "skate status: no running Skate cluster" in capsys.readouterr().err
    assert cli_module.main(["--help"]) == 0
    assert "microbenchmark" in capsys.readouterr().out


def test_start_flag_values_reach_the_start_function(monkeypatch):
    from skate.scripts import start_stop

    seen = []
    monkeypatch.setattr(start_stop, "start", lambda options: seen.append(options) or 0)
    argv = ["start", "--address", "10.0.0.1:6379", "--num-cpus", "1.5", "--num-gpus", "2"]
    argv += ["--resources", '{"red": 2}', "--object-store-memory", "1000", "--token", "t"]
    argv += ["--node-ip-address", "10.0.0.2", "--listen-address", "0.0.0.0", "--block"]
    assert cli_module.main(argv) == 0
    assert seen == [
        start_stop.StartOptions(
            head=False,
            address="10.0.0.1:6379",
            port=6379,
            node_ip_address="10.0.0.2",
            listen_address="0.0.0.0",
            num_cpus=1.5,
            num_gpus=2.0,
            resources='{"red": 2}',
            object_store_memory=1000,
            token="t",
            block=True,
        )
    ]
    seen.clear()
    assert cli_module.main(["start", "--head"]) == 0
    assert seen == [start_stop.StartOptions(head=True)]  # every default as argparse had it


def test_project_script_entry_point_is_main():
    tomllib = pytest.importorskip("tomllib")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["scripts"]["skate"] == "skate.scripts.cli:main"
    assert any(dep.replace(" ", "").startswith("click>=8.1") for dep in project["dependencies"])
    assert isinstance(cli_module.cli, click.Group)


def test_a_verb_family_reports_usage_errors_of_its_sub_verbs(capsys, monkeypatch):
    from skate.scripts._click import Group

    @click.group("job", cls=Group)
    def job() -> None:
        pass

    @job.command("submit")
    @click.option("--entrypoint", required=True)
    def submit(entrypoint: str) -> int:
        return 7

    monkeypatch.setitem(cli_module.cli.commands, "job", job)
    assert cli_module.main(["job", "submit", "--entrypoint", "python x.py"]) == 7
    assert cli_module.main(["job", "submit", "--entrypoint"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: skate job submit"), err
    assert "skate job submit: error: " in err and "--entrypoint" in err, err


def test_a_verb_not_built_from_the_skate_classes_is_refused():
    from skate.scripts._click import check_verbs

    @click.command("plain")
    def plain() -> None:
        pass

    with pytest.raises(TypeError, match="plain"):
        check_verbs("some.module", [plain])
