"""Checked by mypy, never run: what a type checker sees of taskq's API.

Each ``reveal_type`` line ends with the type it must reveal; each line
ending in ``# E: <code>`` must be rejected with that error code.
``tests/typing/test_api_types.py`` runs mypy on a copy of this file outside
the repository (as a user's code would be) and compares.
"""

from __future__ import annotations

import datetime as dt

from taskq import Job, JobContext, JobState, TaskQ

app = TaskQ("typing")


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task(retry=3, tombstone=True)
def greet(name: str, *, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


@app.task(bind=True)
def bound(job: JobContext, n: int) -> float:
    return n / job.attempt


job = add.delay(1, 2)
reveal_type(job)  # T: taskq.job.Job[int]
reveal_type(job.result())  # T: int
reveal_type(job.result(timeout=5))  # T: int
reveal_type(greet.delay("ana").get())  # T: str
reveal_type(greet.apply_async(("bo",), {"punctuation": "?"}, countdown=dt.timedelta(seconds=5)))  # T: taskq.job.Job[str]
reveal_type(add.map([(1, 2), (3, 4)]))  # T: list[taskq.job.Job[int]]
reveal_type(job.state)  # T: taskq.states.JobState
reveal_type(job.wait())  # T: taskq.states.JobState
reveal_type(add(1, 2))  # T: int
reveal_type(app.job("some-id"))  # T: taskq.workflow.Workflow[Any]
reveal_type(app.enqueue("add", 1, 2))  # T: taskq.job.Job[Any]
state: JobState = job.get_status()
other: Job[int] = add.delay(3, 4)

add.delay("1", 2)  # E: arg-type
add.delay(1)  # E: call-arg
add.delay(1, 2, 3)  # E: call-arg
greet.delay("ana", punctuation=1)  # E: arg-type
greet.delay(name=1)  # E: arg-type
wrong: str = add.delay(1, 2).result()  # E: assignment
