"""The taskq demo: starts a worker on the embedded server, sends it jobs,
prints the results, stops the worker. Run from the repository root:

    python examples/demo.py
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from demo_tasks import add, app, flaky, slow_square, word_count  # noqa: E402
from worker_process import running_worker  # noqa: E402

from taskq.embedded import embedded_status, stop_embedded_server  # noqa: E402


def main() -> int:
    embedded = "TASKQ_REDIS_URL" not in os.environ
    ours = embedded and embedded_status() is None  # this demo starts the embedded server: it stops it too
    print(f"taskq demo: server {'(embedded) ' + app.url if embedded else app.url}")
    try:
        with running_worker(app, "demo_tasks:app", concurrency=2, loglevel="WARNING", wait_ready=True):
            print("add(2, 3) =", add.delay(2, 3).result(timeout=10))
            counts = word_count.delay("the quick brown fox jumps over the lazy dog the end").result(timeout=10)
            print("word_count: 'the' appears", counts["the"], "times")
            print("flaky:", flaky.delay(3).result(timeout=10))

            started = time.monotonic()
            jobs = slow_square.map(range(10))
            print("10 slow squares on 2 processes:", [j.result(timeout=20) for j in jobs],
                  f"in {time.monotonic() - started:.1f}s")

            later = add.apply_async((40, 2), delay=timedelta(seconds=1))
            print("delayed job is", later.state.value, "-> result", later.result(timeout=10))
            print("demo finished")
            return 0
    finally:
        app.close()
        if ours:
            stop_embedded_server()
            print("stopped the embedded server (a later TaskQ without a redis_url starts it again)")


if __name__ == "__main__":
    sys.exit(main())
