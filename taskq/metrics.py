"""Prometheus metrics: the text exposition format (0.0.4) rendered from a
stats snapshot, and a tiny stdlib HTTP server for ``/metrics``.

Every scrape reads a fresh snapshot from the server, so any process (a
worker's supervisor, ``taskq metrics``, a web app) exposes the same numbers
for the whole namespace: scrape one of them, not all.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import weakref
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .appview import AppView
from .errors import TaskQError
from .stats import COUNTERS, Stats, WorkerInfo, collect_stats, collect_workers

log = logging.getLogger("taskq.metrics")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _le(bound_ms: float) -> str:
    return "+Inf" if math.isinf(bound_ms) else f"{bound_ms / 1000:g}"


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {escape_help(help_text)}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        if labels:
            inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {format_value(value)}")
        else:
            self.lines.append(f"{name} {format_value(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render_prometheus(stats: Stats, workers: Sequence[WorkerInfo]) -> str:
    """The snapshot as Prometheus text exposition (HELP and TYPE for every family)."""
    out = _Exposition()
    tasks = sorted(stats.tasks.items())
    queues = sorted(stats.queues.items())

    out.family("taskq_jobs_total", "counter", "Jobs per task and outcome (" + ", ".join(COUNTERS) + ").")
    for name, t in tasks:
        for c in COUNTERS:
            out.sample("taskq_jobs_total", t.counters.get(c, 0), task=name, outcome=c)

    out.family("taskq_queue_jobs_total", "counter", "Jobs per queue and outcome.")
    for name, q in queues:
        for c in COUNTERS:
            out.sample("taskq_queue_jobs_total", q.counters.get(c, 0), queue=name, outcome=c)

    out.family("taskq_job_duration_seconds", "histogram", "Run time of jobs that ended in an outcome, per task.")
    for name, t in tasks:
        rt = t.run_time
        for bound, cum in rt.buckets:
            out.sample("taskq_job_duration_seconds_bucket", cum, task=name, le=_le(bound))
        out.sample("taskq_job_duration_seconds_sum", rt.sum_ms / 1000, task=name)
        out.sample("taskq_job_duration_seconds_count", rt.count, task=name)

    out.family("taskq_queue_depth", "gauge", "Jobs ready to run, per queue.")
    for name, q in queues:
        out.sample("taskq_queue_depth", q.depth, queue=name)
    out.family("taskq_queue_paused", "gauge", "1 while the queue is paused (workers take no job from it).")
    for name, q in queues:
        out.sample("taskq_queue_paused", 1 if q.paused else 0, queue=name)
    out.family("taskq_queue_held", "gauge", "Jobs its flow limits hold back, per queue.")
    for name, q in queues:
        out.sample("taskq_queue_held", q.held, queue=name)
    out.family("taskq_queue_latency_seconds", "gauge", "Age of the oldest ready job, per queue (0 when empty).")
    for name, q in queues:
        out.sample("taskq_queue_latency_seconds", q.latency_s, queue=name)

    for name, value, help_text in (
        ("taskq_scheduled_jobs", stats.scheduled, "Jobs waiting for their due time (delayed and retrying)."),
        ("taskq_active_jobs", stats.active, "Jobs leased by workers (running or prefetched)."),
        ("taskq_failed_jobs", stats.failed, "Jobs kept in the failed index."),
        ("taskq_stalled_jobs", stats.stalled, "Jobs held back by an operator."),
        ("taskq_workers", len(workers), "Registered worker processes."),
    ):
        out.family(name, "gauge", help_text)
        out.sample(name, value)
    return out.text()


def _handler(app: AppView) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self._reply(404, "not found: metrics are at /metrics\n")
                return
            try:
                body = render_prometheus(collect_stats(app), collect_workers(app))
            except TaskQError as exc:
                self._reply(503, f"cannot read stats: {exc}\n")
                return
            self._reply(200, body, CONTENT_TYPE)

        def _reply(self, code: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("metrics %s: " + format, self.client_address[0], *args)

    return MetricsHandler


def _close_in_child(ref: weakref.ReferenceType[ThreadingHTTPServer]) -> None:
    server = ref()
    if server is not None:
        server.socket.close()


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True


class _MetricsServerV6(_MetricsServer):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        with contextlib.suppress(OSError):  # "::" takes IPv4 clients too, where the system allows it
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def _server_class(host: str) -> type[_MetricsServer]:
    """IPv6 for a host with IPv6 addresses only (``::``, ``::1``, ...), else IPv4."""
    try:
        families = {info[0] for info in socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM,
                                                            flags=socket.AI_PASSIVE)}
    except socket.gaierror:
        return _MetricsServer  # binding reports the unknown host
    return _MetricsServerV6 if families == {socket.AF_INET6} else _MetricsServer


def metrics_url(host: str, port: int) -> str:
    """``http://HOST:PORT/metrics``, an IPv6 address in brackets."""
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"


def serve_metrics(app: AppView, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve ``/metrics`` on ``host:port`` (IPv4, or IPv6 for a host such as
    ``::`` or ``::1``) from a daemon thread; returns the server
    (``server.server_address`` has the port when ``port`` is 0; stop it with
    ``server.shutdown()``). Forked processes close their copy of the socket."""
    server = _server_class(host)((host, port), _handler(app))
    ref = weakref.ref(server)
    os.register_at_fork(after_in_child=lambda: _close_in_child(ref))  # type: ignore[arg-type]  # a subclass
    threading.Thread(target=server.serve_forever, name="taskq-metrics", daemon=True).start()
    log.info("serving metrics on %s", metrics_url(host, server.server_address[1]))
    return server
