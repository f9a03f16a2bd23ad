"""Tunable constants in one place; each can be overridden by an environment variable."""

from __future__ import annotations

import os


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


# Values whose serialized size is below this travel inline in messages.
MAX_INLINE_BYTES = _env_int("SKATE_MAX_INLINE_BYTES", 100 * 1024)
# A frame larger than this closes the connection that sent it.
MAX_FRAME_BYTES = _env_int("SKATE_MAX_FRAME_BYTES", 512 * 1024 * 1024)
# Default object store capacity as a fraction of total memory.
OBJECT_STORE_MEMORY_FRACTION = _env_float("SKATE_OBJECT_STORE_FRACTION", 0.3)
# Alignment of every buffer inside the shared-memory arena.
ARENA_ALIGNMENT = 64
# Tasks a caller keeps in flight at one leased worker when the function is known to be short.
MAX_TASKS_IN_FLIGHT_PER_WORKER = _env_int("SKATE_MAX_TASKS_IN_FLIGHT_PER_WORKER", 8)
# A function whose recent runs took less than this (seconds) counts as short.
SHORT_TASK_SECONDS = _env_float("SKATE_SHORT_TASK_SECONDS", 0.002)
# Idle leases are returned to the raylet after this many seconds.
IDLE_LEASE_SECONDS = _env_float("SKATE_IDLE_LEASE_SECONDS", 0.2)
# Leases one caller asks for at once for one shape.
MAX_PENDING_LEASE_REQUESTS = _env_int("SKATE_MAX_PENDING_LEASE_REQUESTS", 10)
# Worker processes a raylet keeps beyond those holding leases (0 = as many as CPUs).
PRESTART_WORKERS = _env_int("SKATE_PRESTART_WORKERS", 0)
# Seconds to wait for a process of the cluster to come up.
STARTUP_TIMEOUT = _env_float("SKATE_STARTUP_TIMEOUT", 30.0)
# Seconds a new connection has to complete the mutual handshake before it is dropped.
HANDSHAKE_TIMEOUT = _env_float("SKATE_HANDSHAKE_TIMEOUT", 5.0)
# The largest frame accepted from a peer that has not authenticated yet (checked before decoding).
PREAUTH_MAX_FRAME_BYTES = _env_int("SKATE_PREAUTH_MAX_FRAME_BYTES", 4096)
# Connections one listener holds that have not authenticated yet; more are closed at once.
MAX_PENDING_CONNECTIONS = _env_int("SKATE_MAX_PENDING_CONNECTIONS", 256)
# A connection whose unsent bytes pass this pauses: an accepting side stops reading its peer
# until they drain below the low-water mark (the connecting side always reads, so two
# processes never wait on each other).
WRITE_HIGH_WATER_BYTES = _env_int("SKATE_WRITE_HIGH_WATER_BYTES", 16 * 1024 * 1024)
WRITE_LOW_WATER_BYTES = _env_int("SKATE_WRITE_LOW_WATER_BYTES", 4 * 1024 * 1024)
# A connection with more unsent bytes than this is closed: its peer is not reading.
MAX_WRITE_BUFFER_BYTES = _env_int("SKATE_MAX_WRITE_BUFFER_BYTES", 1024 * 1024 * 1024)
# Worker output forwarded to drivers: lines per second per worker (with a burst allowance);
# the rest stays in the worker's log file and is counted in a notice to the driver.
LOG_LINES_PER_SECOND = _env_float("SKATE_LOG_LINES_PER_SECOND", 2000.0)
LOG_LINES_BURST = _env_int("SKATE_LOG_LINES_BURST", 10000)
# A forwarded line longer than this is cut (the log file keeps it whole).
MAX_LOG_LINE_CHARS = _env_int("SKATE_MAX_LOG_LINE_CHARS", 16 * 1024)
# Callers waiting in the GCS for an internal-KV key to appear: in all, and per connection.
MAX_KV_WAITERS = _env_int("SKATE_MAX_KV_WAITERS", 10000)
MAX_KV_WAITERS_PER_CONNECTION = _env_int("SKATE_MAX_KV_WAITERS_PER_CONNECTION", 1000)
# Seconds a raylet, driver or worker keeps trying to reach a GCS that went away (it may be
# restarting, see skate.gcs.recovery); Ray's `gcs_rpc_server_reconnect_timeout_s`.
GCS_RECONNECT_TIMEOUT_S = _env_float("SKATE_GCS_RECONNECT_TIMEOUT_S", 60.0)
