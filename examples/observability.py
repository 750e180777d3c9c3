"""Run some jobs, then print the `taskq status` screen and a few metrics.

    python examples/observability.py       (uses TASKQ_REDIS_URL or the embedded server)

Tasks carry explicit names: this file also runs as __main__.
"""

from __future__ import annotations

import sys
import time

from worker_process import running_worker

from taskq import TaskQ
from taskq.metrics import render_prometheus
from taskq.status_text import render_status

app = TaskQ("obs", namespace="example-observability")


@app.task(tombstone=True, name="observability.resize")
def resize(width: int) -> int:
    time.sleep(0.01)
    return width // 2


@app.task(name="observability.broken")
def broken() -> None:
    raise RuntimeError("no such image")


def main() -> int:
    try:
        with running_worker(app, "observability:app"):
            jobs = resize.map(range(100, 130))
            failed = broken.delay()
            [j.result(timeout=20) for j in jobs]
            while not failed.state.finished:
                time.sleep(0.05)
            stats, workers = app.stats(), app.workers()
            print(render_status(stats, workers))
            print(f"resize: {stats.tasks['observability.resize'].counters['succeeded']} succeeded, "
                  f"p95 {stats.tasks['observability.resize'].run_time.p95_ms:g} ms")
            wanted = ("taskq_jobs_total{", "taskq_queue_depth{")
            print("\n".join(line for line in render_prometheus(stats, workers).splitlines() if line.startswith(wanted)))
            return 0
    finally:
        app.backend.delete_namespace()
        app.close()


if __name__ == "__main__":
    sys.exit(main())
