"""``manage.py taskq_worker``: run taskq worker processes for a tasks backend."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from django.tasks import task_backends

from taskq.logs import setup_logging
from taskq.worker.config import WorkerConfig
from taskq.worker.supervisor import Supervisor

from ...backend import TaskqBackend


class Command(BaseCommand):
    help = "Run taskq worker processes for the tasks of a TaskqBackend (its QUEUES unless -Q is given)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--backend", default="default", help="Alias in settings.TASKS (default: default).")
        parser.add_argument("-c", "--concurrency", type=int, default=None, help="Worker processes (default: CPUs).")
        parser.add_argument("-t", "--threads", type=int, default=1, help="Jobs each process runs at once.")
        parser.add_argument("-Q", "--queues", default="", help="Queues to serve, in priority order.")
        parser.add_argument("--no-scheduler", action="store_true", help="Run no scheduler in this worker.")
        parser.add_argument("--loglevel", default="INFO", help="Log level (default: INFO).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            backend = task_backends[options["backend"]]
        except Exception as exc:
            raise CommandError(f"no tasks backend {options['backend']!r}: {exc}") from None
        if not isinstance(backend, TaskqBackend):
            raise CommandError(f"tasks backend {options['backend']!r} is a {type(backend).__name__}, "
                               "not taskq.contrib.django.TaskqBackend")
        queues = tuple(q.strip() for q in options["queues"].split(",") if q.strip()) or tuple(sorted(backend.queues))
        kwargs: dict[str, Any] = {"concurrency": options["concurrency"]} if options["concurrency"] else {}
        try:
            config = WorkerConfig(queues=queues, threads=options["threads"], scheduler=not options["no_scheduler"],
                                  **kwargs)
        except ValueError as exc:
            raise CommandError(str(exc)) from None

        def setup() -> None:
            setup_logging(options["loglevel"].upper())

        setup()
        connections.close_all()  # the worker processes are forked: each opens its own
        sys.exit(Supervisor(backend.app, config, log_setup=setup).run())
