"""``taskq migrate``: move a namespace to the key layout its app is set to."""

from __future__ import annotations

import click

from taskq.slots import migrate_to_queue_layout

from .common import app_params, friendly
from .loader import load_app


@click.command()
@app_params
@friendly
def migrate(app: str | None) -> None:
    """Move APP's namespace from the one-slot key layout to a slot per queue
    (the app set to key_layout='queue'). Stop its workers first; producers may
    go on. Safe to run again: a run cut short is finished by the next."""
    the_app = load_app(app)
    moved = migrate_to_queue_layout(the_app)
    queues = ", ".join(sorted(moved.queues)) or "none"
    click.echo(f"migrated namespace {the_app.settings.namespace!r}: {moved.jobs} job(s), {moved.keys} key(s) "
               f"moved; queues with a slot: {queues}")
    if moved.left:
        click.echo(f"left in place (unknown to taskq): {', '.join(moved.left[:20])}", err=True)
