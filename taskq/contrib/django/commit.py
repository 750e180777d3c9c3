"""Enqueue once the database transaction commits."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.tasks import Task


def enqueue_on_commit(task: Task, *args: Any, using: str | None = None, **kwargs: Any) -> None:
    """Enqueue ``task(*args, **kwargs)`` when the current transaction of
    database ``using`` commits (at once outside a transaction); nothing is
    enqueued if it rolls back. A worker so never sees a job for rows it
    cannot read yet."""
    transaction.on_commit(lambda: task.enqueue(*args, **kwargs), using=using)
