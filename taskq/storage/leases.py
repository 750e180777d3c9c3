"""The worker's calls: settle outcomes and claim jobs in one script, block
for work, heartbeats, reaping a dead worker's jobs, and worker registries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .connection import Arg, Connection, translate_errors

# Field count per outcome in settle_claim, per claimed job in its reply.
OUTCOME_FIELDS = 10
CLAIM_FIELDS = 8


class Leases(Connection):
    """Claims, outcomes, heartbeats and reaping."""

    outbox_written = False  # the last settle_claim left entries in the outbox (a hint)

    def settle_claim_args(
        self,
        worker_id: str,
        count: int,
        outcomes: Sequence[Sequence[Arg]],
        queues: Sequence[str],
        tasks: Sequence[str],
        caps: Sequence[int],
        now_ms: Arg = "",
    ) -> list[Arg]:
        args: list[Arg] = [now_ms, worker_id, count, *caps, len(outcomes)]
        for outcome in outcomes:
            args.extend(outcome)
        args.append(len(queues))
        args.extend(queues)
        args.append(len(tasks))
        args.extend(tasks)
        return args

    @staticmethod
    def parse_settle_claim(reply: list[Any]) -> tuple[list[int], list[list[Any]]]:
        n = int(reply[0])
        settled = [int(x) for x in reply[1 : 1 + n]]
        got = int(reply[1 + n])
        base = 2 + n
        jobs = [reply[base + i * CLAIM_FIELDS : base + (i + 1) * CLAIM_FIELDS] for i in range(got)]
        return settled, jobs

    def settle_claim(self, *args: Any, **kwargs: Any) -> tuple[list[int], list[list[Any]]]:
        """Sent once: after a lost reply the jobs it claimed are leased to this
        worker unknown to it, so the caller must hear of the loss (and release
        them, see release_orphans.lua) rather than claim again. Sets
        ``outbox_written`` when the call left entries in the slot's outbox."""
        reply = self.run("settle_claim", *self.settle_claim_args(*args, **kwargs), resend=False)
        settled, jobs = self.parse_settle_claim(reply)
        self.outbox_written = len(reply) > 2 + len(settled) + len(jobs) * CLAIM_FIELDS
        return settled, jobs

    def block_then_claim(
        self, worker_id: str, count: int, queues: Sequence[str], tasks: Sequence[str],
        caps: Sequence[int], timeout: float,
    ) -> tuple[list[int], list[list[Any]]]:
        """Sleep on the queues' wake-up lists, then claim -- one round trip:
        the claim is pipelined behind the BLPOP and runs when it returns."""
        args = self.settle_claim_args(worker_id, count, (), queues, tasks, caps)
        claim_cmd = self.command("settle_claim")
        with translate_errors(self.url):
            _, reply = self.wire.pipeline(
                (("BLPOP", *[self.keys.notify(q) for q in queues], timeout), (*claim_cmd, *args)),
                timeout=timeout + 30.0, resend=False)  # as settle_claim: a lost claim reply must surface
        if isinstance(reply, Exception) and self.code_missing(reply):
            return self.parse_settle_claim(self.run("settle_claim", *args))
        if isinstance(reply, Exception):
            with translate_errors(self.url):
                raise reply
        return self.parse_settle_claim(reply)

    def heartbeat(self, worker_id: str, info_ttl_ms: int, info: Mapping[str, Arg] | None = None,
                  watch_gap_ms: int | None = None) -> tuple[int, dict[str, int]]:
        """Renew the worker's leases (see heartbeat.lua); with ``watch_gap_ms``
        the beat is a pass of the reapers' watch too. Returns the server's
        time and the held jobs' cancel requests."""
        flat: list[Arg] = []
        for k, v in (info or {}).items():
            flat += [k, v]
        reply = self.run("heartbeat", "", worker_id, info_ttl_ms, "" if watch_gap_ms is None else watch_gap_ms, *flat)
        cancels = {reply[i].decode(): int(reply[i + 1]) for i in range(1, len(reply), 2)}
        return int(reply[0]), cancels

    def reap_worker(
        self, worker_id: str, *, expected_hb: int | None, caps: tuple[int, int, int],
        lost_blob: bytes, running: str = "", running_kind: str = "lost",
        running_blob: bytes = b"", running_due_ms: int = 0, now_ms: Arg = "",
    ) -> dict[str, str] | None:
        """Return a dead worker's jobs; None if its heartbeat moved on meanwhile."""
        reply = self.run(
            "reap_worker", now_ms, worker_id, "" if expected_hb is None else expected_hb,
            *caps, lost_blob, running, running_kind, running_blob, running_due_ms,
        )
        if not int(reply[0]):
            return None
        return {reply[i].decode(): reply[i + 1].decode() for i in range(1, len(reply), 2)}

    def reaper_pass(self, timeout_ms: int, max_gap_ms: int, limit: int = 1000,
                    now_ms: Arg = "") -> tuple[str, int, int, list[tuple[str, int]]]:
        """One reaper look (see reaper_pass.lua): why the shared watch
        restarted ('' if it did not), when it began, the server's now, and
        the workers whose silence it has watched for ``timeout_ms``, with
        their heartbeat."""
        reply = self.run("reaper_pass", now_ms, timeout_ms, max_gap_ms, limit)
        rows = [(reply[i].decode(), int(float(reply[i + 1]))) for i in range(3, len(reply), 2)]
        return reply[0].decode(), int(reply[1]), int(reply[2]), rows

    def release_orphans(self, worker_id: str, known: Sequence[str]) -> list[str]:
        return [x.decode() for x in self.run("release_orphans", "", worker_id, *known)]

    def register_tasks(self, limits: Mapping[str, int | str]) -> None:
        """Per task: its max attempts, or ``"<max attempts>:<max lost>"``."""
        if limits:
            with translate_errors(self.url):
                self.client.hset(self.keys.tasks, mapping=dict(limits))

    def workers(self) -> list[tuple[str, int]]:
        with translate_errors(self.url):
            rows = self.client.zrange(self.keys.workers, 0, -1, withscores=True)
        return [(w.decode(), int(s)) for w, s in rows]

    def worker_details(self, worker_ids: Sequence[str]) -> list[tuple[dict[bytes, bytes], list[bytes]]]:
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for wid in worker_ids:
                pipe.hgetall(self.keys.worker(wid))
                pipe.smembers(self.keys.worker_jobs(wid))
            raw = pipe.execute()
        return [(raw[i], sorted(raw[i + 1])) for i in range(0, len(raw), 2)]
