"""The node manager: resources, leases, worker pool and the shared-memory store."""
