"""Delayed jobs, retries with backoff, and a periodic task.

    python examples/scheduling.py      (uses TASKQ_REDIS_URL or the embedded server)

Tasks carry explicit names: this file also runs as __main__.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from worker_process import running_worker

from taskq import TaskQ, current_job

app = TaskQ("scheduling", namespace="example-scheduling")


@app.task(tombstone=True, name="scheduling.stamp")
def stamp(label: str) -> str:
    return f"{label} ran at {datetime.now(UTC):%H:%M:%S.%f}"[:-3]


@app.task(tombstone=True, retry=4, retry_interval=0.1, retry_backoff=2, name="scheduling.unreliable")
def unreliable() -> str:
    attempt = current_job().attempt
    if attempt < 3:
        raise ConnectionError(f"upstream down (attempt {attempt})")
    return f"ok on attempt {attempt}"


@app.periodic(every=timedelta(seconds=1), name="scheduling.tick")
def tick() -> None:
    print("tick", flush=True)


def main() -> int:
    try:
        with running_worker(app, "scheduling:app"):
            t0 = time.monotonic()
            job = stamp.apply_async(("delayed 1s",), delay=1)
            print("state right after enqueue:", job.state.value)
            print(job.result(timeout=15), f"(after {time.monotonic() - t0:.2f}s)")
            eta = datetime.now(UTC) + timedelta(seconds=0.5)
            print(stamp.apply_async(("at an eta",), eta=eta).result(timeout=15))
            job = unreliable.delay()
            print(job.result(timeout=15), "- errors before:", [e["message"] for e in job.info().errors])
            return 0
    finally:
        app.close()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
