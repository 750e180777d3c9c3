"""``taskq queue``: pause, resume and list queues."""

from __future__ import annotations

import click

from .common import app_params, emit_json, friendly, resolve_app


@click.group("queue")
def queue() -> None:
    """Pause, resume and list queues."""


@queue.command("pause")
@click.argument("name")
@app_params
@friendly
def queue_pause(name: str, app: str | None) -> None:
    """Workers take no new job from queue NAME until it is resumed (running jobs finish)."""
    resolve_app(app).control.pause_queue(name)
    click.echo(f"queue {name} paused")


@queue.command("resume")
@click.argument("name")
@app_params
@friendly
def queue_resume(name: str, app: str | None) -> None:
    """Workers take jobs from queue NAME again."""
    resolve_app(app).control.resume_queue(name)
    click.echo(f"queue {name} resumed")


@queue.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@app_params
@friendly
def queue_list(app: str | None, as_json: bool) -> None:
    """Every queue: paused or not, jobs ready, jobs held back by flow limits."""
    rows = resolve_app(app).control.queues()
    if as_json:
        emit_json([{"name": q.name, "paused": q.paused, "depth": q.depth, "held": q.held} for q in rows])
        return
    if not rows:
        click.echo("no queues")
        return
    width = max(5, *(len(q.name) for q in rows))
    click.echo(f"{'QUEUE':<{width}}  {'PAUSED':<6}  {'READY':>7}  {'HELD':>7}")
    for q in rows:
        click.echo(f"{q.name:<{width}}  {'yes' if q.paused else 'no':<6}  {q.depth:>7}  {q.held:>7}")
