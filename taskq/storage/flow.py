"""Flow control's calls: pausing queues, the scheduler's flow pass (held
jobs back to their queue, expiry), and what listings read of it."""

from __future__ import annotations

from collections.abc import Sequence

from .connection import Arg, Connection, translate_errors


class Flow(Connection):
    """Pause and resume, the flow pass, held-job counts."""


    def pause_queue(self, queue: str) -> None:
        """Workers take no job from ``queue`` until :meth:`resume_queue`; it is
        listed (a queue paused before its first job is known)."""
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            pipe.set(self.keys.paused(queue), 1)
            pipe.sadd(self.keys.queues, queue)
            pipe.execute()

    def resume_queue(self, queue: str) -> None:
        """Workers take its jobs again: a sleeping one is woken."""
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(self.keys.paused(queue))
            pipe.lpush(self.keys.notify(queue), 1)
            pipe.ltrim(self.keys.notify(queue), 0, 0)
            pipe.execute()

    def paused_queues(self, queues: Sequence[str]) -> dict[str, bool]:
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for q in queues:
                pipe.exists(self.keys.paused(q))
            return {q: bool(n) for q, n in zip(queues, pipe.execute())}

    def held_counts(self, queues: Sequence[str]) -> dict[str, int]:
        """Per queue: the jobs its limits hold back (parked). Two round trips."""
        k = self.keys
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for q in queues:
                pipe.zrange(k.parked(q), 0, -1)
            limiters = [[lim.decode() for lim in raw] for raw in pipe.execute()]
            pipe = self.client.pipeline(transaction=False)
            for q, lims in zip(queues, limiters):
                for lim in lims:
                    pipe.llen(k.parked_jobs(q, lim))
            lengths = iter(pipe.execute())
        return {q: sum(next(lengths) for _ in lims) for q, lims in zip(queues, limiters)}

    def flow_pass(self, queue: str, expired_ttl_ms: int, done_cap: int, limit: int = 1000,
                  now_ms: Arg = "") -> tuple[int, int, int]:
        """One look at a queue's limiters and expiries (see flow_pass.lua):
        ``(moved back, expired, next due ms or -1)``."""
        moved, expired, nxt = self.run("flow_pass", now_ms, queue, expired_ttl_ms, done_cap, limit)
        return int(moved), int(expired), int(nxt)
