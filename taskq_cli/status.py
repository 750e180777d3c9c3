"""``taskq status`` and ``taskq metrics``."""

from __future__ import annotations

import time

import click

from taskq.errors import BrokerUnavailable, TaskQError
from taskq.metrics import metrics_url, serve_metrics
from taskq.stats import Stats
from taskq.status_text import render_status

from .common import app_params, emit_json, friendly, json_text
from .loader import load_app

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen


@click.command()
@app_params
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot and the workers as JSON.")
@click.option("--watch", is_flag=True, help="Refresh every second until Ctrl-C.")
@friendly
def status(app: str | None, as_json: bool, watch: bool) -> None:
    """Queues, workers, task counters and run times of APP."""
    the_app = load_app(app)
    previous: Stats | None = None
    try:
        while True:
            try:
                stats, workers = the_app.stats(), the_app.workers()
            except TaskQError as exc:
                if not watch or not isinstance(exc, BrokerUnavailable):  # only a lost server may come back
                    raise
                click.echo(f"{'' if as_json else CLEAR}{type(exc).__name__}: {exc} (retrying)", err=as_json)
                time.sleep(1.0)
                continue
            if as_json:
                data = {**stats.as_dict(), "workers": [w.as_dict() for w in workers]}
                if watch:
                    click.echo(json_text(data, indent=None))  # one document per line
                else:
                    emit_json(data)
            elif watch:
                click.echo(CLEAR + render_status(stats, workers, previous), nl=False)
            else:
                click.echo(render_status(stats, workers), nl=False)
            if not watch:
                return
            previous = stats
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass


@click.command()
@app_params
@click.option("--port", type=click.IntRange(0, 65535), default=9100, show_default=True,
              help="Port to listen on (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on, IPv4 or IPv6 (0.0.0.0: all IPv4 addresses; '::': all addresses).")
@friendly
def metrics(app: str | None, port: int, host: str) -> None:
    """Serve Prometheus metrics of APP at http://HOST:PORT/metrics until Ctrl-C."""
    the_app = load_app(app)
    the_app.backend.ping()
    try:
        server = serve_metrics(the_app, port, host)
    except OSError as exc:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise click.ClickException(f"cannot listen on {where}: {exc}") from None
    click.echo(f"serving metrics on {metrics_url(host, server.server_address[1])} (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
