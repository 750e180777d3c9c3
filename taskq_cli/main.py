"""``taskq``: run workers and schedulers, inspect and control jobs."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import signal
import sys
from typing import Any

import click

from taskq.embedded import embedded_home, embedded_status, stop_embedded_server
from taskq.logs import setup_logging
from taskq.metrics import serve_metrics
from taskq.worker import Supervisor, WorkerConfig
from taskq.worker.scheduler import run_recovery
from taskq.worker.slot_scheduler import make_scheduler

from . import dashboard, jobs, migrate, queues, status
from .common import app_params, friendly
from .loader import load_app


@click.group()
@click.version_option(package_name="taskq")
def main() -> None:
    """taskq: a distributed task queue on Redis or Valkey."""


LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False)


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (value or "").split(",") if x.strip())


@main.command()
@app_params
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=None, help="Worker processes (default: CPU count).")
@click.option("-t", "--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Jobs each worker process runs at once, one thread each (for tasks that wait on I/O).")
@click.option("-Q", "--queues", default="default", show_default=True, help="Queues to serve, in priority order.")
@click.option("--tasks", default="", help="Serve only these task names (comma-separated).")
@click.option("--include", multiple=True, help="Import a further task module (repeatable).")
@click.option("--prefetch", type=click.IntRange(min=1), default=100, show_default=True, help="Most jobs a consumer (process or thread) leases per claim.")
@click.option("--no-scheduler", is_flag=True, help="Do not run a scheduler in this worker.")
@click.option("--shutdown-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds running jobs get to finish on SIGTERM; then they go back to the queue.")
@click.option("--loglevel", "-l", default="INFO", show_default=True, type=LOG_LEVELS, help="Log level.")
@click.option("--log-format", default="text", show_default=True, type=click.Choice(["text", "json"]),
              help="Log lines as text, or one JSON object per line.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus metrics of the namespace on this port (/metrics).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address for --metrics-port, IPv4 or IPv6.")
@friendly
def worker(app: str | None, concurrency: int | None, threads: int, queues: str, tasks: str, include: tuple[str, ...],
           prefetch: int, no_scheduler: bool, shutdown_timeout: float, loglevel: str, log_format: str,
           metrics_port: int | None, metrics_host: str) -> None:
    """Run worker processes for APP."""
    setup = functools.partial(setup_logging, loglevel, log_format)
    setup()
    the_app = load_app(app, include)
    kwargs: dict[str, Any] = {}
    if concurrency:
        kwargs["concurrency"] = concurrency
    config = WorkerConfig(queues=_csv(queues), tasks=_csv(tasks), threads=threads, prefetch=prefetch,
                          scheduler=not no_scheduler, shutdown_timeout=shutdown_timeout, **kwargs)
    unknown = [t for t in config.tasks if t not in the_app.tasks]
    if unknown:
        raise click.ClickException(f"--tasks names unknown task(s): {', '.join(unknown)}")
    if metrics_port is not None:
        try:
            serve_metrics(the_app, metrics_port, metrics_host)
        except OSError as exc:
            raise click.ClickException(f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc}") from None
    sys.exit(Supervisor(the_app, config, log_setup=setup).run())


@main.command()
@app_params
@click.option("--loglevel", "-l", default="INFO", show_default=True, type=LOG_LEVELS, help="Log level.")
@friendly
def scheduler(app: str | None, loglevel: str) -> None:
    """Run a standalone scheduler (delayed jobs, retries, cron, reaper)."""
    setup_logging(loglevel)
    s = make_scheduler(load_app(app))
    signal.signal(signal.SIGTERM, lambda *_: s.stop())
    signal.signal(signal.SIGINT, lambda *_: s.stop())
    logging.getLogger("taskq.scheduler").info("scheduler started")
    s.run()


@main.command()
@app_params
@friendly
def recover(app: str | None) -> None:
    """Return the jobs of dead workers to their queues now."""
    result = run_recovery(load_app(app))
    if not result:
        click.echo("no dead workers")
    for wid, job_ids in result.items():
        click.echo(f"reaped {wid}: {len(job_ids)} job(s) {' '.join(job_ids)}")


@main.group()
def server() -> None:
    """Manage the embedded server (./.taskq or $TASKQ_HOME)."""


@server.command("status")
@friendly
def server_status() -> None:
    """Show the embedded server's URL, state, pid, version and memory (exit 1 if none runs)."""
    status = embedded_status()
    if status is None:
        click.echo(f"no embedded server running for {embedded_home()}")
        sys.exit(1)
    for k, v in status.items():
        click.echo(f"{k}: {v}")


@server.command("stop")
@click.option("--timeout", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds to wait for the server to exit.")
@friendly
def server_stop(timeout: float) -> None:
    """Shut the embedded server down (its data stays on disk)."""
    if stop_embedded_server(timeout=timeout):
        click.echo(f"stopped the embedded server of {embedded_home()}")
    else:
        click.echo(f"no embedded server running for {embedded_home()}")


@main.group()
def periodic() -> None:
    """Periodic (cron) tasks."""


@periodic.command("list")
@app_params
@friendly
def periodic_list(app: str | None) -> None:
    """Each periodic task with its schedule and its next three ticks."""
    the_app = load_app(app)
    if not the_app.periodics:
        click.echo("no periodic tasks")
        return
    now = the_app.backend.server_time_ms()
    for name, p in sorted(the_app.periodics.items()):
        ticks = [dt.datetime.fromtimestamp(t / 1000, p.tz).isoformat(timespec="seconds") for t in p.next_ticks(now)]
        click.echo(f"{name}  {p.description}  tz={p.tz}  catch_up={p.catch_up}  "
                   f"next={', '.join(ticks) or 'never (the schedule has ended)'}")


for _group in (jobs.job, jobs.jobs_cmd, jobs.failed, jobs.purge, status.status, status.metrics,
               dashboard.dashboard, queues.queue, migrate.migrate):
    main.add_command(_group)

if __name__ == "__main__":
    main()
