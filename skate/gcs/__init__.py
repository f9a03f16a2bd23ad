"""The global control service: nodes, jobs, internal key-value store."""
