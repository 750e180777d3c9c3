"""Enqueue: one job or a batch through the ``enqueue`` script, durable
enqueues (``WAITAOF``), and streams of chunks pipelined on one connection."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import redis
from redis.exceptions import ResponseError

from ..errors import BrokerUnavailable, DurabilityUnavailable, NotDurable
from .connection import TRANSIENT, Arg, translate_errors
from .plain_enqueue import PlainEnqueue
from .wire import packed

# Field count per job in enqueue/fire_periodic.
ENQUEUE_FIELDS = 16
ENQUEUE_COLUMNS = range(ENQUEUE_FIELDS)


def enqueue_args(jobs: Sequence[Sequence[Arg]], check: bool) -> list[Arg]:
    """The enqueue script's arguments after now_ms (see enqueue.lua): the
    check flag and one group, the first job as the template and, per job,
    only the fields that are not the same in every job (for ``map()``:
    the id and the payload). A call whose ids are not all fresh sends a
    mark of the call instead of '1' (see :func:`call_mark`)."""
    n = len(jobs)
    flag = call_mark() if check else "0"
    if n == 1:
        return [flag, 1, "", *jobs[0]]
    columns = list(zip(*jobs))
    cols = [c for c in ENQUEUE_COLUMNS if columns[c].count(columns[c][0]) != n]
    template = list(jobs[0])
    for c in cols:
        template[c] = ""
    args: list[Arg] = [flag, n, " ".join([str(c + 1) for c in cols]), *template]
    if len(cols) == 1:
        args.extend(columns[cols[0]])
    else:
        args.extend(itertools.chain.from_iterable(zip(*[columns[c] for c in cols])))
    return args


def call_mark() -> str:
    """A mark of one enqueue call, stored with each job it creates: every
    send of the call carries it, so a resend after a lost reply that finds
    a job of its id with this mark knows this call created it (``created``)
    rather than an earlier call."""
    return os.urandom(6).hex()


def enqueued(jobs: Sequence[Sequence[Arg]], reply: list[Any]) -> list[tuple[str, bool, str]]:
    """``(id, created, state)`` per job from the enqueue reply: a created
    job's state, or ``[existing id, state]`` for a job that stood in."""
    return [(str(job[0]), True, x.decode()) if isinstance(x, bytes) else (x[0].decode(), False, x[1].decode())
            for job, x in zip(jobs, reply)]


def enqueued_again(jobs: Sequence[Sequence[Arg]], reply: list[Any]) -> list[tuple[str, bool, str]]:
    """:func:`enqueued` for a resend of fresh ids after a lost reply: a job
    found under its own id was created by the first send of this call (no
    one else knows a fresh id), so it counts as created."""
    return [(jid, created or jid == str(job[0]), state)
            for job, (jid, created, state) in zip(jobs, enqueued(jobs, reply))]


def aof_unconfirmed(aof: Any) -> DurabilityUnavailable | None:
    """The error for a ``WAITAOF`` reply that does not confirm the write, or None."""
    if isinstance(aof, Exception) or int(aof[0]) < 1:
        return DurabilityUnavailable(
            "durable enqueue needs WAITAOF (Redis >= 7.2 or Valkey) with appendonly on; "
            f"the server said: {aof if isinstance(aof, Exception) else 'not confirmed in time'} "
            "(the job was enqueued, but its persistence is not confirmed)"
        )
    return None


class Enqueueing(PlainEnqueue):
    """Creating jobs."""


    def enqueue(self, jobs: Sequence[Sequence[Arg]], now_ms: Arg = "", durable: bool = False,
                fresh: bool = False) -> list[tuple[str, bool, str]]:
        """Create jobs (16 fields each, see enqueue.lua); idempotent by id.

        ``durable``: return only once the server's AOF holds the write (WAITAOF
        on the same connection); a lost connection is retried for
        ``retry_timeout`` s, every send checking the ids.
        A write the AOF does not confirm raises ``DurabilityUnavailable``
        whose ``results`` are what this call would have returned: the jobs
        are enqueued all the same.
        ``fresh``: every id was generated for this call, so no earlier job of
        them left anything behind, and a job a resend finds under one was
        created by this call (a call of other ids marks its jobs for that,
        see :func:`call_mark`). Every send looks for the ids: one that runs
        late must not touch the job its resend created."""
        flat: list[Arg] = [now_ms, *enqueue_args(jobs, check=not fresh)]
        if durable:
            sends = 0

            def send() -> tuple[Any, DurabilityUnavailable | None]:
                nonlocal sends
                sends += 1
                return self._enqueue_durable(flat)

            reply, unconfirmed = self.retrying(send)  # every send checks the ids
            result = (enqueued_again if fresh and sends > 1 else enqueued)(jobs, reply)
            if unconfirmed is not None:
                unconfirmed.results = result
                if isinstance(unconfirmed, NotDurable):
                    unconfirmed.job_ids = [jid for jid, _, _ in result]
                raise unconfirmed
            return result
        if fresh and len(jobs) == 1 and self.plain(jobs[0]):
            try:
                plain = self.enqueue_plain(jobs[0])
            except BrokerUnavailable:  # it may have run: the resend checks the id
                return enqueued_again(jobs, self.run_retrying("enqueue", *flat))
            if plain is not None:
                return [plain]
        if fresh:
            flat[1] = "0"
            try:
                reply = self.run("enqueue", *flat, resend=False)
            except BrokerUnavailable:  # it may have run: the resend checks the ids
                flat[1] = "1"
                return enqueued_again(jobs, self.run_retrying("enqueue", *flat))
        else:
            reply = self.run_retrying("enqueue", *flat)
        return enqueued(jobs, reply)

    def _enqueue_durable(self, flat: list[Arg]) -> tuple[Any, DurabilityUnavailable | None]:
        """Run the enqueue script, WAITAOF (the master's AOF) and WAIT (the
        replicas to wait for, see :meth:`replicas_to_wait_for`) on one
        connection: the script's reply, and the error to raise if they did
        not confirm the write within ``durable_timeout``."""
        replicas = self.replicas_to_wait_for()
        wait_ms = max(int(self.durable_timeout * 1000), 1)
        with translate_errors(self.url):
            for _ in range(2):
                pipe = self.client.pipeline(transaction=False)
                cmd = self.command("enqueue")
                if not self.functions:  # send the source: no NOSCRIPT on this path
                    cmd = ["EVAL", self.scripts["enqueue"].source, 1, self.prefix]
                pipe.execute_command(*cmd, *flat)
                pipe.execute_command("WAITAOF", 1, 0, wait_ms)
                if replicas:
                    # WAIT: the replicas hold the write (in memory; their own
                    # AOF follows). WAITAOF's replica count would wait for
                    # their fsync, which a replica asked in the same read as
                    # the write confirms only on its next periodic ack, 1 s on.
                    pipe.execute_command("WAIT", replicas, wait_ms)
                reply, aof, *held = pipe.execute(raise_on_error=False)
                if not (isinstance(reply, Exception) and self.code_missing(reply)):
                    break
                self.load_code()
        if isinstance(reply, Exception):
            with translate_errors(self.url):
                raise reply
        if isinstance(aof, Exception):
            return reply, DurabilityUnavailable(
                "durable enqueue needs WAITAOF (Redis >= 7.2 or Valkey) with appendonly on; "
                f"the server said: {aof} (the job was enqueued, but its persistence is not confirmed)"
            )
        local = int(aof[0])
        copies = replicas if not held else held[0] if isinstance(held[0], int) else 0
        if local < 1 or copies < replicas:
            where = "the master's AOF" if local < 1 else f"{copies} of {replicas} replica(s) (durable_replicas)"
            return reply, NotDurable(
                f"durable enqueue not confirmed on {where} within {self.durable_timeout:g} s (durable_timeout): "
                "the job was written to the master, but a failover now may lose it")
        return reply, None

    def enqueue_stream(self, chunks: Iterable[Sequence[Sequence[Arg]]], fresh: bool = False
                       ) -> Iterator[list[tuple[str, bool, str]]]:
        """:meth:`enqueue` for a stream of chunks, yielding each chunk's result in order.

        A chunk is sent without waiting for the previous reply, so the caller
        builds the next chunk while the server runs this one (at most two in
        flight, on one connection). After a lost reply (connection error,
        script cache flushed) that chunk and every later one go through
        :meth:`enqueue`, in order; it retries, and enqueue is idempotent by
        job id. ``fresh``: as for :meth:`enqueue` (only a chunk's first send
        skips the id check).

        On an error (from ``chunks``, or a chunk the server refused or could
        not be sent), the replies of the chunks still in flight are read and
        those that went through are yielded before the error is raised: what
        was yielded is every job the server confirmed."""
        pool = self.client.connection_pool
        conn: Any = None
        enqueue_cmd: list[Arg] = []
        try:
            enqueue_cmd = self.command("enqueue")  # may load the code: asks the server
            conn = pool.get_connection()
        except (BrokerUnavailable, *TRANSIENT):
            pass  # every chunk goes through enqueue(), which retries
        sent: list[tuple[Sequence[Sequence[Arg]], list[Arg], bool]] = []  # in flight: (jobs, args, sent on conn)
        streaming = True  # False once a reply was lost: keeps the chunks in order

        def result() -> list[tuple[str, bool, str]]:
            nonlocal conn, streaming
            jobs, flat, on_conn = sent.pop(0)
            reply = None
            if on_conn and conn is not None:
                try:
                    with translate_errors(self.url):
                        reply = conn.read_response()
                except ResponseError as exc:
                    if not self.code_missing(exc):
                        raise
                    streaming = False  # a chunk in flight behind this one is still read from conn
                except BrokerUnavailable:
                    conn.disconnect()  # the rest goes through enqueue()
                    pool.release(conn)
                    conn = None
            if reply is None:
                if fresh:
                    flat[1] = "1"  # it may have run (a call of ids not all fresh sends its mark)
                reply = self.run_retrying("enqueue", *flat)
                if fresh:
                    return enqueued_again(jobs, reply)
            return enqueued(jobs, reply)

        try:
            for jobs in chunks:
                flat: list[Arg] = ["", *enqueue_args(jobs, check=not fresh)]
                on_conn = False
                streaming = streaming or not sent  # nothing in flight: order is safe again
                if conn is not None and streaming:
                    try:
                        conn.send_packed_command(packed(conn, [(*enqueue_cmd, *flat)]), False)
                        on_conn = True
                    except TRANSIENT:
                        conn.disconnect()  # never reconnect it: replies would no longer match chunks
                        pool.release(conn)
                        conn = None
                sent.append((jobs, flat, on_conn))
                if len(sent) > 1:
                    yield result()
            while sent:
                yield result()
        except Exception:
            while sent and conn is not None:  # sent before the error: they may have gone through
                jobs, _, on_conn = sent.pop(0)
                if not on_conn:
                    continue
                try:
                    reply = conn.read_response()
                except ResponseError:
                    continue  # refused (out of memory, code missing): nothing of it was written
                except (*TRANSIENT, redis.RedisError):
                    conn.disconnect()  # unanswered: whether it and the rest went through is unknown
                    break
                yield enqueued(jobs, reply)
            raise
        finally:
            if conn is not None:
                if any(on_conn for _, _, on_conn in sent):
                    conn.disconnect()  # replies left unread (an error, or the caller stopped)
                pool.release(conn)
