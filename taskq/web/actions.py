"""The dashboard's actions: each one a call into ``app.control`` that
returns the line reported to the operator. No web framework here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from taskq import TaskQ
from taskq.errors import ConfigurationError

from .views import supports_pause

Form = Mapping[str, str]


@dataclass(frozen=True)
class Action:
    name: str
    label: str  # the button's text
    confirm: str | None  # the question asked first; None: no confirmation
    run: Callable[[TaskQ, Form], str]
    kind: str  # "job", "failed" or "queue": what the form names

    def question(self, form: Form) -> str:
        return (self.confirm or "").format(**{k: form.get(k) or "any" for k in ("job_id", "queue", "task",
                                                                                 "error_type")})


def _job_id(form: Form) -> str:
    job_id = form.get("job_id", "")
    if not job_id:
        raise ConfigurationError("no job id given")
    return job_id


def _filters(form: Form) -> dict[str, Any]:
    return {k: form.get(k) or None for k in ("task", "queue", "error_type")}


def _described(form: Form) -> str:
    parts = [f"{k.replace('_', ' ')} {v}" for k, v in _filters(form).items() if v]
    return f" ({', '.join(parts)})" if parts else ""


def _queue(form: Form) -> str:
    queue = form.get("queue", "")
    if not queue:
        raise ConfigurationError("no queue given")
    return queue


def _pause(app: TaskQ, queue: str) -> str:
    app.control.pause_queue(queue)
    return f"queue {queue} paused"


def _resume(app: TaskQ, queue: str) -> str:
    app.control.resume_queue(queue)
    return f"queue {queue} resumed"


ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("requeue", "Requeue", None,
           lambda app, f: f"job {_job_id(f)} requeued (was {app.control.requeue(_job_id(f))})", "job"),
    Action("stall", "Stall", None,
           lambda app, f: f"job {_job_id(f)} stalled (was {app.control.stall(_job_id(f))})", "job"),
    Action("unstall", "Unstall", None,
           lambda app, f: f"job {_job_id(f)} unstalled (was {app.control.unstall(_job_id(f))})", "job"),
    Action("cancel", "Cancel", "Cancel job {job_id}?",
           lambda app, f: f"job {_job_id(f)}: cancel {app.control.cancel(_job_id(f))}", "job"),
    Action("cancel_force", "Cancel (force)", "Cancel job {job_id} and kill the attempt that runs it?",
           lambda app, f: f"job {_job_id(f)}: forced cancel {app.control.cancel(_job_id(f), force=True)}", "job"),
    Action("delete", "Delete", "Delete job {job_id} and all its data?",
           lambda app, f: f"job {_job_id(f)} deleted (was {app.control.delete(_job_id(f))})", "job"),
    Action("requeue_failed", "Requeue matching", "Requeue every failed job matching queue {queue}, "
           "task {task}, error type {error_type}?",
           lambda app, f: f"requeued {app.control.requeue_failed(**_filters(f))} failed job(s){_described(f)}",
           "failed"),
    Action("purge_failed", "Delete matching", "Delete every failed job matching queue {queue}, "
           "task {task}, error type {error_type}?",
           lambda app, f: f"deleted {app.control.purge_failed(**_filters(f))} failed job(s){_described(f)}",
           "failed"),
    Action("pause_queue", "Pause", "Pause queue {queue}? Workers take no new job from it until it is resumed.",
           lambda app, f: _pause(app, _queue(f)), "queue"),
    Action("resume_queue", "Resume", None, lambda app, f: _resume(app, _queue(f)), "queue"),
)}


def available(app: TaskQ, name: str) -> Action | None:
    """The action of that name, if this app offers it."""
    action = ACTIONS.get(name)
    if action is None or (action.kind == "queue" and not supports_pause(app)):
        return None
    return action
