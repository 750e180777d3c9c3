"""A worker process dies mid-job (SIGKILL, as an OOM kill would) and the job
runs again on a fresh process, with retry=0: a lost run uses no attempt. The
task sees its attempt and fencing token.

    python examples/crash_recovery.py      (uses TASKQ_REDIS_URL or the embedded server)

Tasks carry explicit names: this file also runs as __main__.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time

from worker_process import running_worker

from taskq import JobState, TaskQ, current_job

app = TaskQ("crash", namespace="example-crash")


@app.task(tombstone=True, name="crash_recovery.charge")  # retry=0 (the default)
def charge(order: int, marker: str) -> str:
    job = current_job()
    # an external side effect would use job.fencing_token as its idempotency key
    if not os.path.exists(marker):  # the first run
        open(marker, "w").close()
        time.sleep(30)  # the process is killed during this
    return f"order {order} charged on attempt {job.attempt} (fencing token {job.fencing_token})"


def main() -> int:
    try:
        with running_worker(app, "crash_recovery:app", concurrency=2):
            job = charge.delay(42, os.path.join(tempfile.mkdtemp(), "first-run"))
            deadline = time.monotonic() + 20
            while job.state != JobState.ACTIVE and time.monotonic() < deadline:
                time.sleep(0.05)
            pid = int(next(w.pid for w in app.workers() if job.id in w.jobs))
            print(f"job {job.state.value} in process {pid}; killing that process with SIGKILL")
            os.kill(pid, signal.SIGKILL)
            print(job.result(timeout=20))
            info = job.info()
            print(f"attempts used: {info.attempts}, runs lost with their worker: {info.lost_count}")
            print("errors recorded:", [f"{e['type']}: {e['message']}" for e in info.errors])
            return 0
    finally:
        app.backend.delete_namespace()
        app.close()


if __name__ == "__main__":
    sys.exit(main())
