"""Unique jobs, resource locks, priorities and cancellation.

    python examples/job_control.py     (uses TASKQ_REDIS_URL or the embedded server)

Tasks carry explicit names: this file also runs as __main__.
"""

from __future__ import annotations

import sys
import time

from worker_process import running_worker

from taskq import TaskFailed, TaskQ

app = TaskQ("control", namespace="example-control")


@app.task(tombstone=True, unique=True, name="job_control.rebuild_index")
def rebuild_index(shop: str) -> str:
    time.sleep(0.3)
    return f"index of {shop} rebuilt"


@app.task(tombstone=True, resource=lambda invoice, amount: f"invoice:{invoice}", on_locked="wait", name="job_control.charge")
def charge(invoice: int, amount: int) -> str:
    time.sleep(0.1)
    return f"charged {amount} on invoice {invoice}"


@app.task(tombstone=True, name="job_control.report")
def report(name: str) -> str:
    return name


def main() -> int:
    first = rebuild_index.delay("acme")
    second = rebuild_index.delay("acme")
    print("unique: second enqueue returned the same job:", second.id == first.id, "created:", second.created)
    charges = [charge.delay(42, amount) for amount in (10, 20, 30)]
    low = report.apply_async(("low priority",), priority="low")
    high = report.apply_async(("high priority",), priority="high")
    doomed = report.delay("never runs")
    print("cancel a queued job:", doomed.cancel())
    try:
        with running_worker(app, "job_control:app", concurrency=2):
            print(first.result(timeout=15))
            print([c.result(timeout=15) for c in charges], "(one at a time: same invoice)")
            print(high.result(timeout=15), "/", low.result(timeout=15))
            try:
                doomed.result(timeout=5)
            except TaskFailed as exc:
                print("the cancelled job:", exc.state)
            return 0
    finally:
        app.backend.delete_namespace()
        app.close()


if __name__ == "__main__":
    sys.exit(main())
