"""The core worker: the runtime every driver and worker process links."""
