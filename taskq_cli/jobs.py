"""Job inspection and control commands."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from taskq.control import LISTABLE
from taskq.errors import JobNotFound
from taskq.job import JobInfo
from taskq.workflow import TreeNode, Workflow

from .common import app_params, emit_json, friendly, resolve_app


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _show(info: JobInfo) -> None:
    rows = [
        ("id", info.id), ("state", info.state.value), ("task", info.task), ("queue", info.queue),
        ("priority", info.priority), ("args", info.args), ("kwargs", info.kwargs),
        ("created", _when(info.created_at)), ("started", _when(info.started_at)),
        ("finished", _when(info.finished_at)), ("due", _when(info.due_at)),
        ("attempts", info.attempts), ("lost", info.lost_count), ("worker", info.worker or "-"),
        ("requeues", info.requeue_count), ("cancels", info.cancel_count),
    ]
    if info.progress:
        rows.append(("progress", f"{info.progress.get('fraction', 0):.0%} {info.progress.get('message', '')}"))
    if info.result is not None:
        rows.append(("result", info.result))
    if info.skipped_by:
        rows.append(("skipped by", info.skipped_by))
    if info.waiting_for:
        rows.append(("waits for", info.waiting_for))
    if info.dependency_count:
        rows.append(("depends on", f"{len(info.dependencies)} of {info.dependency_count} pending: "
                                   f"{' '.join(info.dependencies[:20]) or '-'}"))
    if info.parents:
        rows.append(("parents", " ".join(info.parents)))
    if info.cause:
        rows.append(("ended by", info.cause))
    for k, v in rows:
        click.echo(f"{k:>10}: {v}")
    for err in info.errors:
        click.echo(f"     error: attempt {err.get('attempt')}: {err.get('type')}: {err.get('message')}")


def _tree(node: TreeNode, depth: int = 0) -> None:
    """A workflow as an indented tree: each job above the jobs it waits for."""
    click.echo(f"{'  ' * depth}{'- ' if depth else ''}{node.id} {node.task} [{node.state}]")
    for kid in node.waits_for:
        _tree(kid, depth + 1)


@click.group()
def job() -> None:
    """Show or control one job."""


@job.command("show")
@click.argument("job_id")
@app_params
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@friendly
def job_show(app: str | None, job_id: str, as_json: bool) -> None:
    """Everything stored about a job: state, arguments, times, errors, result."""
    handle = resolve_app(app).job(job_id)
    info = handle.info()
    if as_json:
        emit_json(info.as_dict())
        return
    _show(info)
    if info.workflow or info.parents or info.dependency_count:
        click.echo("  workflow:")
        root = info.id if info.workflow else _handle_of(handle, info)
        _tree(handle.__class__(handle.app, root).tree())


def _handle_of(handle: Workflow[Any], info: JobInfo) -> str:
    """The workflow handle above a job (following the first parent up, as far
    as the parents still exist: a deleted or expired one ends the walk)."""
    seen = {info.id}
    cur = info
    while cur.parents and cur.parents[0] not in seen:
        seen.add(cur.parents[0])
        try:
            cur = handle.__class__(handle.app, cur.parents[0]).info()
        except JobNotFound:
            break
    return cur.id


def _control(name: str, help_text: str, **extra: Any) -> None:
    @job.command(name, help=help_text)
    @click.argument("job_id")
    @app_params
    @friendly
    def command(app: str | None, job_id: str, **kw: Any) -> None:
        the_app = resolve_app(app)
        result = getattr(the_app.control, name)(job_id, **kw)
        # unstall answers the state the job is in now, cancel its outcome, the rest the state it left
        said = {"unstall": f"now {result}", "cancel": result}.get(name, f"was {result}")
        click.echo(f"{job_id}: {name} ok ({said})")

    if name == "cancel":
        click.option("--force", is_flag=True, help="Kill the attempt if it is running.")(command)
    if name == "requeue":
        click.option("--front", is_flag=True, help="Put it at the head of its queue.")(command)


for _name, _help in (
    ("cancel", "Cancel a job (a running one is asked to stop; --force kills it)."),
    ("requeue", "Give a job back to its queue (failed, cancelled, skipped, expired, scheduled, stalled, "
                "waiting for a resource, or active: once its attempt ends)."),
    ("stall", "Hold a queued, scheduled or failed job back."),
    ("unstall", "Put a stalled job back: in its queue, or in the schedule if it was stalled while scheduled "
                "and its due time is ahead."),
    ("retract", "Remove a job waiting to run (queued, scheduled, waiting or stalled)."),
    ("delete", "Delete a job that is not running, and all its data."),
):
    _control(_name, _help)


def _table(infos: list[JobInfo]) -> None:
    click.echo(f"{'ID':<18} {'STATE':<10} {'TASK':<32} {'QUEUE':<10} {'ATT':>3}  {'CREATED':<19}  ERROR")
    for i in infos:
        err = i.errors[-1] if i.errors else {}
        msg = " ".join(f"{err.get('type')}: {err.get('message')}".split())[:60] if err else ""  # one line
        click.echo(f"{i.id:<18} {i.state.value:<10} {i.task[:32]:<32} {i.queue[:10]:<10} {i.attempts:>3}  "
                   f"{_when(i.created_at):<19}  {msg}")


@click.command("jobs")
@app_params
@click.option("--state", type=click.Choice(LISTABLE), default="queued", show_default=True, help="The state to list.")
@click.option("--queue", "-Q", default=None, help="Only jobs of this queue.")
@click.option("--task", default=None, help="Only jobs of this task.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Most jobs to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@friendly
def jobs_cmd(app: str | None, state: str, queue: str | None, task: str | None, limit: int, as_json: bool) -> None:
    """List jobs in a state."""
    infos = resolve_app(app).control.list_jobs(state, queue=queue, task=task, limit=limit)
    if as_json:
        emit_json([i.as_dict() for i in infos])
    else:
        _table(infos)


@click.group()
def failed() -> None:
    """Failed jobs: list, requeue, purge."""


def _filters(fn: Any) -> Any:
    fn = click.option("--task", default=None, help="Only jobs of this task.")(fn)
    fn = click.option("--queue", "-Q", default=None, help="Only jobs of this queue.")(fn)
    fn = click.option("--error-type", default=None, help="Exception type name of the last error.")(fn)
    return app_params(fn)


@failed.command("list")
@_filters
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@friendly
def failed_list(app: str | None, task: str | None, queue: str | None, error_type: str | None, as_json: bool) -> None:
    """Failed jobs matching the filters (all when none), newest first."""
    infos = resolve_app(app).control.failed_jobs(task=task, queue=queue, error_type=error_type)
    emit_json([i.as_dict() for i in infos]) if as_json else _table(infos)


@failed.command("requeue")
@_filters
@friendly
def failed_requeue(app: str | None, task: str | None, queue: str | None, error_type: str | None) -> None:
    """Give the matching failed jobs (all when no filter) back to their queues."""
    n = resolve_app(app).control.requeue_failed(task=task, queue=queue, error_type=error_type)
    click.echo(f"requeued {n} failed job(s)")


@failed.command("purge")
@_filters
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@friendly
def failed_purge(app: str | None, task: str | None, queue: str | None, error_type: str | None, yes: bool) -> None:
    """Delete the matching failed jobs (all when no filter)."""
    if not yes:
        click.confirm("Delete the matching failed jobs?", abort=True)
    n = resolve_app(app).control.purge_failed(task=task, queue=queue, error_type=error_type)
    click.echo(f"deleted {n} failed job(s)")


@click.command("purge")
@app_params
@click.option("--queue", "-Q", required=True, help="The queue to empty.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@friendly
def purge(app: str | None, queue: str, yes: bool) -> None:
    """Delete every queued job of a queue."""
    if not yes:
        click.confirm(f"Delete every queued job of queue {queue!r}?", abort=True)
    n = resolve_app(app).control.purge_queue(queue)
    click.echo(f"deleted {n} queued job(s) from {queue}")
