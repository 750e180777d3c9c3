"""Tasks of the demo. Run a worker for them with:

    taskq worker demo_tasks:app        (from the examples/ directory)
"""

from __future__ import annotations

import time

from taskq import Retry, TaskQ, current_job

app = TaskQ("demo")  # no URL: the embedded server in ./.taskq (or TASKQ_REDIS_URL)


@app.task(tombstone=True)
def add(a: int, b: int) -> int:
    return a + b


@app.task(tombstone=True, timeout=30)
def word_count(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    return counts


@app.task(tombstone=True, retry=3, retry_interval=0.2)
def flaky(succeed_on: int) -> str:
    """Fails until its attempt number reaches ``succeed_on``."""
    attempt = current_job().attempt
    if attempt < succeed_on:
        raise Retry(countdown=0.1, reason=f"attempt {attempt} not yet")
    return f"succeeded on attempt {attempt}"


@app.task(tombstone=True)
def slow_square(x: int) -> int:
    time.sleep(0.2)
    return x * x


@app.task(tombstone=True)
def walk(steps: int, pause: float = 0.1) -> str:
    """Takes ``steps`` steps, recording its progress after each."""
    job = current_job()
    for step in range(1, steps + 1):
        time.sleep(pause)
        job.set_progress(step / steps, f"step {step} of {steps}")
    return f"walked {steps} steps"
