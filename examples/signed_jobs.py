"""Signed jobs: a worker with a secret key runs only jobs signed with it (or
an older key still accepted); a job written by anyone else fails.

    python examples/signed_jobs.py         (uses TASKQ_REDIS_URL or the embedded server)

Tasks carry explicit names: this file also runs as __main__.
"""

from __future__ import annotations

import os
import sys

from worker_process import running_worker

from taskq import TaskFailed, TaskQ

SECRET = os.environ.setdefault("EXAMPLE_SIGNING_KEY", "new-key")
OLD = "old-key"
app = TaskQ("signed", namespace="example-signed", secret_key=SECRET, old_secret_keys=[OLD])


@app.task(tombstone=True, name="signed_jobs.transfer")
def transfer(amount: int) -> str:
    return f"transferred {amount}"


def main() -> int:
    old_producer = TaskQ("old", app.url, namespace="example-signed", secret_key=OLD)
    intruder = TaskQ("intruder", app.url, namespace="example-signed")  # no key
    try:
        with running_worker(app, "signed_jobs:app", loglevel="CRITICAL"):
            print("signed with the current key:", transfer.delay(10).result(timeout=15))
            print("signed with the old key:", old_producer.enqueue("signed_jobs.transfer", 20).result(timeout=15))
            try:
                intruder.enqueue("signed_jobs.transfer", 1_000_000).result(timeout=15)
            except TaskFailed as exc:
                print("unsigned job:", exc.state, "-", exc.exc_type)
            return 0
    finally:
        app.backend.delete_namespace()
        for a in (app, old_producer, intruder):
            a.close()


if __name__ == "__main__":
    sys.exit(main())
