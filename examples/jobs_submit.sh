#!/bin/sh
# Submit a job to a Skate head on this machine, follow it, then look at it again.
# Run from the repository root: sh examples/jobs_submit.sh
set -e
skate start --head --num-cpus 2 --dashboard-port 8265
trap 'skate stop' EXIT

cat > /tmp/skate_job_app.py <<'PY'
import os
import skate

skate.init()  # joins the cluster the job runs on (SKATE_ADDRESS is set for it)

@skate.remote
def square(x):
    return x * x

print("greeting:", os.environ.get("GREETING"))
print("squares:", skate.get([square.remote(i) for i in range(5)]))
PY

# Follows the log and exits with the job's outcome.
skate job submit --address http://127.0.0.1:8265 --submission-id example_job \
    --runtime-env-json '{"env_vars": {"GREETING": "hello"}}' -- python /tmp/skate_job_app.py
skate job status example_job
skate job list
skate job delete example_job
