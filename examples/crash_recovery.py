"""A worker process dies mid-job (SIGKILL, as an OOM kill would) and the job
runs again on a fresh process; the task sees its attempt and fencing token.

    python examples/crash_recovery.py      (uses TASKQ_REDIS_URL or the embedded server)

Tasks carry explicit names: this file also runs as __main__.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from taskq import JobState, TaskQ, current_job
from worker_process import running_worker

app = TaskQ("crash", namespace="example-crash")


@app.task(tombstone=True, retry=2, retry_interval=0, name="crash_recovery.charge")
def charge(order: int) -> str:
    job = current_job()
    # an external side effect would use job.fencing_token as its idempotency key
    if job.attempt == 1:
        time.sleep(30)  # the process is killed during this
    return f"order {order} charged on attempt {job.attempt} (fencing token {job.fencing_token})"


def main() -> int:
    try:
        with running_worker(app, "crash_recovery:app", concurrency=2):
            job = charge.delay(42)
            deadline = time.monotonic() + 20
            while job.state != JobState.ACTIVE and time.monotonic() < deadline:
                time.sleep(0.05)
            pid = int(next(w.pid for w in app.workers() if job.id in w.jobs))
            print(f"job {job.state.value} in process {pid}; killing that process with SIGKILL")
            os.kill(pid, signal.SIGKILL)
            print(job.result(timeout=20))
            print("errors recorded:", [f"{e['type']}: {e['message']}" for e in job.info().errors])
            return 0
    finally:
        app.backend.delete_namespace()
        app.close()


if __name__ == "__main__":
    sys.exit(main())
