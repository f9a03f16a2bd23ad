"""Ray's `_system_config` keys: applied, accepted with a warning, or rejected with a hint."""

from __future__ import annotations

import json
import warnings

import pytest

from skate._system_config import KNOWN_KEYS, SystemConfig, apply_system_config, parse

RAY_PROGRAM_KEYS = [
    "object_timeout_milliseconds",
    "health_check_initial_delay_ms",
    "health_check_period_ms",
    "health_check_failure_threshold",
    "health_check_timeout_ms",
    "object_store_full_delay_ms",
    "local_gc_min_interval_s",
    "num_heartbeats_timeout",
    "raylet_heartbeat_period_milliseconds",
    "automatic_object_spilling_enabled",
    "max_io_workers",
    "min_spilling_size",
    "object_spilling_threshold",
    "task_retry_delay_ms",
    "worker_register_timeout_seconds",
    "kill_idle_workers_interval_ms",
    "idle_worker_killing_time_threshold_ms",
    "max_direct_call_object_size",
    "lineage_pinning_enabled",
    "max_lineage_bytes",
    "free_objects_period_milliseconds",
    "metrics_report_interval_ms",
    "enable_timeline",
    "event_stats",
    "scheduler_spread_threshold",
    "gcs_actor_scheduling_enabled",
    "memory_usage_threshold",
]


@pytest.mark.parametrize("key", RAY_PROGRAM_KEYS)
def test_ray_keys_are_known(key):
    assert key in KNOWN_KEYS


def test_nothing_given_changes_nothing():
    assert parse(None) == SystemConfig()
    assert parse({}) == SystemConfig()


def test_health_check_keys_set_the_node_timeout():
    config = parse(
        {
            "health_check_initial_delay_ms": 1000,
            "health_check_period_ms": 500,
            "health_check_failure_threshold": 4,
        }
    )
    assert config.node_timeout_s == 3.0
    assert config.heartbeat_s == 0.75  # four reports within the timeout at least
    assert config.no_effect == ()


def test_missing_health_check_keys_take_rays_defaults():
    # Ray's defaults: initial delay 5 s, threshold 5.
    assert parse({"health_check_period_ms": 100}).node_timeout_s == 5.5
    assert parse({"health_check_failure_threshold": 1}).node_timeout_s == 8.0


def test_heartbeat_keys_set_the_node_timeout_and_the_report_period():
    config = parse({"num_heartbeats_timeout": 10, "raylet_heartbeat_period_milliseconds": 100})
    assert (config.node_timeout_s, config.heartbeat_s) == (1.0, 0.1)
    assert parse({"num_heartbeats_timeout": 2}).node_timeout_s == 2.0  # period: 1 s


def test_health_check_keys_win_over_heartbeat_keys():
    config = parse(
        {"num_heartbeats_timeout": 100, "health_check_initial_delay_ms": 0, "health_check_period_ms": 100}
    )
    assert config.node_timeout_s == 0.5


@pytest.mark.parametrize("value", [-1, "5", None, True])
def test_bad_health_values_are_rejected(value):
    with pytest.raises(ValueError, match="health_check_period_ms"):
        parse({"health_check_period_ms": value})


def test_spilling_keys():
    spec = json.dumps({"type": "filesystem", "params": {"directory_path": "/tmp/x"}})
    assert parse({"object_spilling_config": spec}).spill_dir == "/tmp/x"
    assert (
        parse({"object_spilling_config": spec, "object_spilling_directory": "/tmp/y"}).spill_dir == "/tmp/y"
    )
    assert parse({"object_spilling_limit_bytes": 5}).spill_limit == 5
    with pytest.raises(ValueError):
        parse({"object_spilling_limit_bytes": -1})
    with pytest.raises(ValueError):
        parse({"object_spilling_config": json.dumps({"type": "smart_open"})})


def test_keys_without_effect_get_one_warning_naming_them():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = apply_system_config(
            {"enable_timeline": False, "max_io_workers": 2, "health_check_period_ms": 100}
        )
    assert config.no_effect == ("enable_timeline", "max_io_workers")
    [warning] = caught
    assert "enable_timeline" in str(warning.message) and "max_io_workers" in str(warning.message)
    assert "health_check_period_ms" not in str(warning.message)


def test_applied_keys_only_give_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        apply_system_config({"health_check_period_ms": 100, "object_spilling_limit_bytes": 10})


def test_unknown_key_is_rejected_with_a_suggestion():
    with pytest.raises(ValueError, match="Did you mean 'health_check_period_ms'"):
        parse({"health_check_period": 100})
    with pytest.raises(ValueError, match="no_such_key") as info:
        parse({"no_such_key": 1})
    assert "Did you mean" not in str(info.value)


def test_not_a_dict_is_rejected():
    with pytest.raises(TypeError):
        parse([("event_stats", True)])
