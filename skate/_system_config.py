"""Ray's `_system_config`: which keys exist, which mean something here, and what they set.

Ray programs pass tuning keys to `init(_system_config=...)` and `Cluster.add_node()`. Skate
knows every key name Ray 2.x defines (names only), so a program written for Ray runs: keys
with a meaning in Skate are applied, the others are accepted with one warning naming them,
and a name Ray does not have is a ValueError with the closest known names.

Applied here:

- spilling: `object_spilling_config` (a filesystem `directory_path`), `object_spilling_directory`,
  and Skate's own `object_spilling_limit_bytes` (also SKATE_SPILL_DIR, SKATE_SPILL_LIMIT_BYTES);
- node death: the GCS declares a silent node dead after
  `health_check_initial_delay_ms + health_check_period_ms * health_check_failure_threshold`,
  or (Ray's older keys) `num_heartbeats_timeout * raylet_heartbeat_period_milliseconds`; raylets
  then report at least four times within that time. Ray's defaults fill the keys not given.
"""

from __future__ import annotations

import difflib
import json
import os
import warnings
from dataclasses import dataclass
from typing import Any

# Every RAY_CONFIG name of Ray's src/ray/common/ray_config_def.h (a recent 2.x release)...
_RAY_KEYS = """
    debug_dump_period_milliseconds event_stats emit_main_service_metrics enable_cluster_auth
    AUTH_MODE ENABLE_K8S_TOKEN_AUTH event_stats_print_interval_ms ray_cookie
    handler_warning_timeout_ms gcs_pull_resource_loads_period_milliseconds
    raylet_report_resources_period_milliseconds raylet_check_gc_period_milliseconds
    memory_usage_threshold memory_monitor_refresh_ms count_swap_in_memory_monitor
    min_memory_free_bytes max_kill_memory_buffer_bytes worker_killing_policy_by_group
    system_memory_bytes_min user_memory_proportion_high user_memory_proportion_max
    task_failure_entry_ttl_ms cancelled_lease_tombstone_ttl_ms max_cancelled_lease_tombstones
    task_oom_retries report_actor_placement_resources record_ref_creation_sites
    record_task_actor_creation_sites free_objects_period_milliseconds free_objects_batch_size
    lineage_pinning_enabled max_free_local_objects_batch_size
    free_local_objects_backlog_warn_objects_per_node max_lineage_bytes preallocate_plasma_memory
    worker_cap_enabled worker_cap_initial_backoff_delay_ms worker_cap_max_backoff_delay_ms
    scheduler_spread_threshold scheduler_top_k_fraction scheduler_top_k_absolute
    scheduler_report_pinned_bytes_only max_direct_call_object_size max_grpc_message_size
    agent_max_grpc_message_size grpc_server_retry_timeout_milliseconds grpc_enable_http_proxy
    actor_excess_queueing_warn_threshold object_timeout_milliseconds
    worker_lease_timeout_milliseconds raylet_death_check_interval_milliseconds
    get_check_signal_interval_milliseconds worker_fetch_request_size fetch_warn_timeout_milliseconds
    fetch_fail_timeout_milliseconds yield_plasma_lock_workaround raylet_client_num_connect_attempts
    raylet_client_connect_timeout_milliseconds kill_worker_timeout_milliseconds
    actor_graceful_shutdown_timeout_ms worker_register_timeout_seconds
    worker_maximum_startup_concurrency pop_worker_max_retries worker_max_resource_analysis_iteration
    max_num_generator_returns worker_oom_score_adjustment worker_niceness redis_db_connect_retries
    redis_db_connect_wait_milliseconds redis_db_probe_timeout_milliseconds
    redis_namespace_cleanup_use_unlink num_redis_request_retries redis_retry_base_ms
    redis_retry_multiplier redis_retry_max_ms object_manager_timer_freq_ms
    object_manager_pull_timeout_ms object_manager_push_timeout_ms object_manager_default_chunk_size
    object_manager_max_bytes_in_flight maximum_gcs_deletion_batch_size
    maximum_gcs_storage_operation_batch_size object_store_get_max_ids_to_print_in_warning
    gcs_server_rpc_server_thread_num gcs_server_rpc_client_thread_num
    gcs_redis_heartbeat_interval_milliseconds gcs_lease_worker_retry_interval_ms
    gcs_create_actor_retry_interval_ms gcs_create_placement_group_retry_min_interval_ms
    gcs_create_placement_group_retry_max_interval_ms gcs_create_placement_group_retry_multiplier
    maximum_gcs_destroyed_actor_cached_count maximum_gcs_dead_worker_cached_count
    maximum_gcs_dead_node_cached_count gcs_storage gcs_storage_path gcs_rocksdb_io_pool_size
    gcs_rocksdb_strand_buckets object_store_full_delay_ms plasma_store_usage_trigger_gc_threshold
    local_gc_interval_s local_gc_min_interval_s global_gc_min_interval_s task_retry_delay_ms
    task_oom_retry_delay_base_ms task_actor_unavailable_retry_delay_base_ms
    task_actor_unavailable_retry_max_delay_ms cancellation_retry_ms support_fork
    gcs_rpc_server_reconnect_timeout_s gcs_rpc_server_connect_timeout_s
    gcs_grpc_max_reconnect_backoff_ms gcs_grpc_min_reconnect_backoff_ms
    gcs_grpc_initial_reconnect_backoff_ms gcs_grpc_max_request_queued_max_bytes
    grpc_client_check_connection_status_interval_milliseconds ray_syncer_message_refresh_interval_ms
    metrics_report_batch_size task_events_skip_driver_for_test task_events_report_interval_ms
    ray_events_report_interval_ms task_events_max_num_task_in_gcs
    task_events_max_dropped_task_attempts_tracked_per_job_in_gcs
    task_events_max_num_status_events_buffer_on_worker
    task_events_max_num_export_status_events_buffer_on_worker task_events_send_batch_size
    export_task_events_write_batch_size task_events_max_num_profile_events_per_task
    task_events_max_num_profile_events_buffer_on_worker task_events_dropped_task_attempt_batch_size
    task_events_shutdown_flush_timeout_ms task_events_gc_job_summary_interval_ms
    gcs_mark_task_failed_on_job_done_delay_ms gcs_mark_task_failed_on_worker_dead_delay_ms
    enable_metrics_collection metric_cardinality_level enable_open_telemetry
    disable_open_telemetry_sdk_log enable_ray_event ray_event_recorder_max_queued_events
    enable_grpc_metrics_collection_for io_context_event_loop_lag_collection_interval_ms
    io_context_monitor_probe_interval_ms io_context_monitor_healthy_deadline_ms
    io_context_monitor_latency_window_ms task_rpc_inlined_bytes_limit
    max_pending_lease_requests_per_scheduling_category agent_register_timeout_ms
    enable_pipe_based_agent_to_parent_health_check agent_manager_retry_interval_ms
    max_resource_shapes_per_load_report gcs_server_request_timeout_seconds enable_worker_prestart
    prestart_worker_first_driver kill_idle_workers_interval_ms idle_worker_killing_time_threshold_ms
    idle_worker_killing_memory_threshold_bytes num_workers_soft_limit metrics_report_interval_ms
    enable_timeline max_placement_group_load_report_size object_spilling_config
    object_spilling_directory verbose_spill_logs automatic_object_spilling_enabled max_io_workers
    min_spilling_size max_spilling_file_size_bytes object_spilling_threshold max_fused_object_count
    oom_grace_period_s is_external_storage_type_fs local_fs_capacity_threshold
    local_fs_monitor_interval_ms locality_aware_leasing_enabled log_rotation_max_bytes
    log_rotation_backup_count timeout_ms_task_wait_for_death_info core_worker_internal_heartbeat_ms
    report_worker_backlog_interval_ms core_worker_rpc_server_reconnect_timeout_base_s
    core_worker_rpc_server_reconnect_timeout_max_s max_task_args_memory_fraction publish_batch_size
    publisher_entity_buffer_max_bytes max_command_batch_size max_object_report_batch_size
    subscriber_timeout_ms gcs_actor_table_min_duration_ms max_error_msg_size_bytes
    raylet_start_wait_time_s predefined_unit_instance_resources custom_unit_instance_resources
    system_concurrency_group_name gcs_max_active_rpcs_per_handler grpc_keepalive_time_ms
    grpc_keepalive_timeout_ms grpc_client_keepalive_time_ms grpc_client_keepalive_timeout_ms
    grpc_client_idle_timeout_ms grpc_stream_buffer_size event_log_reporter_enabled
    emit_event_to_log_file event_level scheduler_avoid_gpu_nodes runtime_env_skip_local_gc
    external_storage_namespace USE_TLS TLS_SERVER_CERT TLS_SERVER_KEY TLS_CA_CERT REDIS_CA_CERT
    REDIS_CA_PATH REDIS_CLIENT_CERT REDIS_CLIENT_KEY REDIS_SERVER_NAME testing_asio_delay_us
    testing_rpc_failure testing_rpc_failure_avoid_intra_node_failures health_check_initial_delay_ms
    health_check_period_ms health_check_timeout_ms health_check_failure_threshold
    num_server_call_thread core_worker_num_server_call_thread worker_core_dump_exclude_plasma_store
    raylet_core_dump_exclude_plasma_store preload_python_modules
    raylet_liveness_self_check_interval_ms kill_child_processes_on_worker_exit
    kill_child_processes_on_worker_exit_with_raylet_subreaper process_group_cleanup_enabled
    enable_autoscaler_v2 nums_py_gcs_reconnect_retry py_gcs_connect_timeout_s
    object_manager_client_connection_num object_manager_rpc_threads_num enable_export_api_write
    enable_export_api_write_config enable_core_worker_task_event_to_gcs ENABLE_GCS_LEADER_ELECTION
    enable_core_worker_ray_event_to_aggregator enable_ray_task_event_recorder
    enable_task_events_to_dashboard_head pipe_logger_read_buf_size enable_infeasible_task_early_exit
    raylet_check_for_unexpected_worker_disconnect_interval_ms
    actor_scheduling_queue_max_reorder_wait_seconds raylet_rpc_server_reconnect_timeout_base_s
    raylet_rpc_server_reconnect_timeout_max_s worker_num_grpc_internal_threads
    start_python_gc_manager_thread enable_output_error_log_if_still_retry
    gcs_resource_broadcast_max_batch_size gcs_resource_broadcast_max_batch_delay_ms
    experimental_object_manager_enable_multiple_connections
"""
# ... and the names an earlier 2.x release had that were removed since (programs still pass them).
_RAY_OLDER_KEYS = """
    legacy_scheduler_warnings raylet_heartbeat_period_milliseconds num_heartbeats_timeout
    gcs_failover_worker_reconnect_timeout num_heartbeats_warning memory_usage_threshold_fraction
    memory_monitor_interval_ms raylet_get_agent_info_interval_ms num_resource_report_periods_warning
    reconstruct_objects_period_milliseconds actor_creation_min_retries get_timeout_milliseconds
    worker_get_request_size inline_object_status_in_refs raylet_fetch_timeout_milliseconds
    maximum_profile_table_rows_count gcs_service_connect_retries
    internal_gcs_service_connect_wait_milliseconds gcs_resource_report_poll_period_ms
    gcs_max_concurrent_resource_pulls high_plasma_storage_usage start_python_importer_thread
    minimum_gcs_reconnect_interval_milliseconds
    gcs_client_check_connection_status_interval_milliseconds use_ray_syncer
    ray_syncer_polling_buffer gcs_service_address_check_interval_milliseconds
    gcs_actor_scheduling_enabled enable_light_weight_resource_report resource_broadcast_batch_size
    max_sync_message_batch_bytes worker_resource_limits_enabled
    isolate_workers_across_resource_types isolate_workers_across_task_types actor_register_async
    worker_killing_policy
"""
SKATE_KEYS = frozenset({"object_spilling_limit_bytes", "enable_task_events"})
RAY_KEYS = frozenset(_RAY_KEYS.split()) | frozenset(_RAY_OLDER_KEYS.split())
KNOWN_KEYS = RAY_KEYS | SKATE_KEYS

SPILL_KEYS = ("object_spilling_config", "object_spilling_directory", "object_spilling_limit_bytes")
HEALTH_KEYS = ("health_check_initial_delay_ms", "health_check_period_ms", "health_check_failure_threshold")
HEARTBEAT_KEYS = ("num_heartbeats_timeout", "raylet_heartbeat_period_milliseconds")
GCS_RECONNECT_KEY = "gcs_rpc_server_reconnect_timeout_s"
TASK_EVENT_KEYS = ("enable_task_events", "task_events_max_num_task_in_gcs", "task_events_report_interval_ms")
APPLIED_KEYS = frozenset(SPILL_KEYS + HEALTH_KEYS + HEARTBEAT_KEYS + TASK_EVENT_KEYS + (GCS_RECONNECT_KEY,))
# Ray's defaults, for the keys of a group that a program leaves out.
RAY_DEFAULTS = {
    "health_check_initial_delay_ms": 5000,
    "health_check_period_ms": 3000,
    "health_check_failure_threshold": 5,
    "num_heartbeats_timeout": 30,
    "raylet_heartbeat_period_milliseconds": 1000,
}
DEFAULT_HEARTBEAT_S = 1.0


@dataclass(frozen=True)
class SystemConfig:
    """What `_system_config` sets for the processes of a node (None: the built-in default)."""

    spill_dir: str | None = None
    spill_limit: int | None = None
    node_timeout_s: float | None = None  # the GCS: a node silent this long is dead
    heartbeat_s: float | None = None  # a raylet: how often it reports to the GCS
    gcs_reconnect_timeout_s: float | None = None  # raylets and workers: how long a lost GCS is awaited
    no_effect: tuple[str, ...] = ()  # Ray keys accepted that change nothing here
    # Environment variables the node's processes get (task events: SKATE_TASK_EVENTS...).
    env: tuple[tuple[str, str], ...] = ()

    @property
    def task_events(self) -> bool:
        """Whether the node's processes record task events."""
        return dict(self.env).get("SKATE_TASK_EVENTS", "1") != "0"


def parse(system_config: dict | None) -> SystemConfig:
    """Check `system_config` and work out its settings; raises ValueError/TypeError naming the key."""
    if system_config is None:
        system_config = {}
    if not isinstance(system_config, dict):
        raise TypeError(f"_system_config must be a dict, got {type(system_config).__name__}")
    for key in system_config:
        if not isinstance(key, str):
            raise TypeError(f"_system_config keys must be str, got {key!r}")
        if key not in KNOWN_KEYS:
            close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=3, cutoff=0.6)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"Unknown _system_config key {key!r}: Ray has no such setting.{hint}")
    spill_dir, spill_limit = _spill_settings(system_config)
    node_timeout_s, heartbeat_s = _node_death(system_config)
    no_effect = tuple(sorted(k for k in system_config if k not in APPLIED_KEYS))
    reconnect = system_config.get(GCS_RECONNECT_KEY)
    if reconnect is not None and (
        isinstance(reconnect, bool) or not isinstance(reconnect, (int, float)) or reconnect < 0
    ):
        raise ValueError(f"_system_config[{GCS_RECONNECT_KEY!r}] must be a number >= 0, got {reconnect!r}")
    return SystemConfig(
        spill_dir,
        spill_limit,
        node_timeout_s,
        heartbeat_s,
        gcs_reconnect_timeout_s=None if reconnect is None else float(reconnect),
        no_effect=no_effect,
        env=_task_event_env(system_config),
    )


def _task_event_env(config: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The task-event settings as environment variables for the node's processes.

    `enable_task_events` (Skate's switch; Ray turns them off with
    `task_events_report_interval_ms=0`), `task_events_max_num_task_in_gcs` (the GCS's window)
    and `task_events_report_interval_ms` (how often each process sends its events).
    """
    env: dict[str, str] = {}
    if "enable_task_events" in config:
        value = config["enable_task_events"]
        if not isinstance(value, bool):
            raise ValueError(f"_system_config['enable_task_events'] must be a bool, got {value!r}")
        env["SKATE_TASK_EVENTS"] = "1" if value else "0"
    for key, var in (
        ("task_events_max_num_task_in_gcs", "SKATE_TASK_EVENTS_MAX_NUM_TASK_IN_GCS"),
        ("task_events_report_interval_ms", "SKATE_TASK_EVENTS_REPORT_INTERVAL_MS"),
    ):
        if key in config:
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"_system_config[{key!r}] must be an int >= 0, got {value!r}")
            env[var] = str(value)
    if env.get("SKATE_TASK_EVENTS_REPORT_INTERVAL_MS") == "0":
        env["SKATE_TASK_EVENTS"] = "0"
        del env["SKATE_TASK_EVENTS_REPORT_INTERVAL_MS"]
    if env.get("SKATE_TASK_EVENTS_MAX_NUM_TASK_IN_GCS") == "0":
        raise ValueError("_system_config['task_events_max_num_task_in_gcs'] must be >= 1")
    return tuple(sorted(env.items()))


def apply_system_config(system_config: dict | None) -> SystemConfig:
    """`parse`, then one warning listing the keys that have no effect in Skate."""
    config = parse(system_config)
    if config.no_effect:
        warnings.warn(
            f"_system_config keys with no effect in Skate (accepted, ignored): {', '.join(config.no_effect)}",
            RuntimeWarning,
            stacklevel=3,
        )
    return config


def _spill_settings(config: dict[str, Any]) -> tuple[str | None, int | None]:
    """Where objects spill and how many bytes may go there.

    From `object_spilling_directory`, `object_spilling_config` (a filesystem `directory_path`)
    and `object_spilling_limit_bytes`, or from the environment (SKATE_SPILL_DIR,
    SKATE_SPILL_LIMIT_BYTES). Default: inside the session directory, until the disk is 95% full.
    """
    spill_dir = os.environ.get("SKATE_SPILL_DIR") or None
    limit_text = os.environ.get("SKATE_SPILL_LIMIT_BYTES")
    limit = int(limit_text) if limit_text else None
    if "object_spilling_config" in config:
        raw = config["object_spilling_config"]
        spec = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(spec, dict) or spec.get("type", "filesystem") != "filesystem":
            raise ValueError(f"object_spilling_config must be a filesystem config, got {raw!r}")
        path = (spec.get("params") or {}).get("directory_path")
        if isinstance(path, list):
            path = path[0] if path else None
        if path is not None and not isinstance(path, str):
            raise ValueError(f"directory_path must be a str, got {path!r}")
        spill_dir = path or spill_dir
    if config.get("object_spilling_directory"):
        path = config["object_spilling_directory"]
        if not isinstance(path, str):
            raise ValueError(f"object_spilling_directory must be a str, got {path!r}")
        spill_dir = path  # Ray: it takes precedence over object_spilling_config
    if "object_spilling_limit_bytes" in config:
        limit = config["object_spilling_limit_bytes"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"object_spilling_limit_bytes must be an int >= 0, got {limit!r}")
    return spill_dir, limit


def _number(config: dict[str, Any], key: str, minimum: int) -> float:
    value = config.get(key, RAY_DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ValueError(f"_system_config[{key!r}] must be a number >= {minimum}, got {value!r}")
    return value


def _node_death(config: dict[str, Any]) -> tuple[float | None, float | None]:
    """(node timeout, raylet heartbeat period) in seconds, or (None, None) if not configured.

    Health-check keys win over the older heartbeat keys when both are given.
    """
    heartbeat_s = None
    if any(k in config for k in HEALTH_KEYS):
        delay = _number(config, "health_check_initial_delay_ms", 0)
        period = _number(config, "health_check_period_ms", 1)
        threshold = _number(config, "health_check_failure_threshold", 1)
        timeout_s = (delay + period * threshold) / 1000
    elif any(k in config for k in HEARTBEAT_KEYS):
        beats = _number(config, "num_heartbeats_timeout", 1)
        period = _number(config, "raylet_heartbeat_period_milliseconds", 1)
        timeout_s = beats * period / 1000
        heartbeat_s = period / 1000
    else:
        return None, None
    # Report often enough that a healthy node is never taken for dead.
    heartbeat_s = min(heartbeat_s or DEFAULT_HEARTBEAT_S, timeout_s / 4)
    return timeout_s, heartbeat_s
