"""Scenarios run against the project, a real taskq worker serving it:
``python drive.py NAME`` prints one JSON object."""

import asyncio
import datetime as dt
import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
import django

django.setup()

from django.db import transaction  # noqa: E402
from django.tasks import task_backends  # noqa: E402
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist  # noqa: E402
from django.utils import timezone  # noqa: E402
from shop.models import Order  # noqa: E402
from shop.tasks import add, double, fail, mark_paid, whoami  # noqa: E402

from taskq import TaskFailed  # noqa: E402
from taskq.contrib.django import enqueue_on_commit  # noqa: E402

backend = task_backends["default"]


def finished(result_id):
    """Wait (on the server, no polling) for the job, then read its result."""
    try:
        backend.app.job(result_id).result(timeout=30)
    except TaskFailed:
        pass
    return backend.get_result(result_id)


def described(r):
    out = {"id": r.id, "status": str(r.status), "args": r.args, "kwargs": r.kwargs, "attempts": r.attempts,
           "queue": r.task.queue_name, "priority": r.task.priority, "backend": r.backend,
           "enqueued": r.enqueued_at is not None, "started": r.started_at is not None,
           "finished": r.finished_at is not None, "name": r.task.name,
           "errors": [[e.exception_class_path, e.traceback.strip().splitlines()[-1]] for e in r.errors]}
    if r.status == "SUCCESSFUL":
        out["value"] = r.return_value
    return out


def run_success():
    r = add.enqueue(2, b=3)
    return {"enqueued": described(r), "done": described(finished(r.id)), "via_task": add.get_result(r.id).id}


def run_failure():
    r = fail.enqueue("no luck")
    done = finished(r.id)
    try:
        _ = done.return_value
        raised = None
    except ValueError as exc:
        raised = str(exc)
    return {"done": described(done), "return_value_raises": raised,
            "exception_class": done.errors[0].exception_class.__name__}


def run_options():
    later = timezone.now() + dt.timedelta(hours=1)
    r = add.using(priority=42, queue_name="low", run_after=later).enqueue(1, 1)
    got = backend.get_result(r.id)
    try:
        add.using(queue_name="nowhere").enqueue(1, 1)
        invalid = None
    except InvalidTask as exc:
        invalid = str(exc)
    return {"result": described(got), "run_after_delta": abs((got.task.run_after - later).total_seconds()),
            "taskq_state": str(backend.app.job(r.id).state), "invalid": invalid}


def run_context_and_async():
    ctx = whoami.enqueue()
    async def both():
        r = await double.aenqueue(21)
        await backend.app.job(r.id).aresult(timeout=30)
        return await double.aget_result(r.id)
    return {"context": described(finished(ctx.id)), "expected_id": ctx.id, "async": described(asyncio.run(both()))}


def jobs_of(name):
    """Ids of the namespace's jobs of Django task ``name``."""
    return sorted(i for i, _ in backend.app.backend.job_states() if backend.get_result(i).task.name == name)


def run_on_commit():
    with transaction.atomic():
        order = Order.objects.create(total=10)
        enqueue_on_commit(mark_paid, order.pk)
        inside = jobs_of("mark_paid")
    (job_id,) = jobs_of("mark_paid")
    done = finished(job_id)
    try:
        with transaction.atomic():
            doomed = Order.objects.create(total=20)
            enqueue_on_commit(mark_paid, doomed.pk)
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    return {"inside_transaction": inside, "done": described(done), "paid": Order.objects.get(pk=order.pk).paid,
            "after_rollback": jobs_of("mark_paid"), "job": job_id, "orders": Order.objects.count()}


def run_missing():
    try:
        backend.get_result("no-such-result")
        return {"raised": None}
    except TaskResultDoesNotExist:
        return {"raised": "TaskResultDoesNotExist"}


if __name__ == "__main__":
    print(json.dumps(globals()[f"run_{sys.argv[1]}"]()))
