"""The plain ``.delay()`` path: one ``MULTI``/``EXEC`` of native commands,
no script (see :meth:`PlainEnqueue.enqueue_plain` for when it applies)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis
from redis.exceptions import ResponseError

from ..errors import BrokerUnavailable, TaskQError
from .connection import Arg, Connection, log, translate_errors, translated
from .keys import MINUTE_BUCKET_TTL_MS
from .wire import pack


class PlainEnqueue(Connection):
    """A job enqueued with native commands."""

    def plain(self, job: Sequence[Arg]) -> bool:
        """A job that needs no decision on the server: no delay, no unique
        key, no resource, no flow control (and MULTI/EXEC are allowed)."""
        return not (job[6] or job[7] or job[8] or job[11] or job[15]) and self.multi_allowed()

    def multi_allowed(self) -> bool:
        """Whether this connection may use MULTI/EXEC (an ACL may deny them);
        asked once."""
        if self.multi is None:
            try:
                with translate_errors(self.url):
                    replies = self.wire.pipeline((("MULTI",), ("EXEC",)))
            except BrokerUnavailable:
                return False  # undecided: the script path retries the connection
            errors = [r for r in replies if isinstance(r, ResponseError)]
            if errors and all(isinstance(r, redis.exceptions.ExecAbortError)
                              or isinstance(translated(r, self.url), BrokerUnavailable) for r in errors):
                return False  # a busy server refused or aborted it: undecided, asked again next time
            self.multi = not errors
        return self.multi

    def enqueue_plain(self, job: Sequence[Arg]) -> tuple[str, bool, str] | None:
        """Create one fresh plain job (see :meth:`plain`) with MULTI/EXEC
        instead of a script: the same keys and fields as enqueue.lua writes,
        as one atomic step, without the script's per-command overhead.

        Invariants (as enqueue.lua): the job's hash and its ready-list entry
        appear together; its level is registered, its queue listed, one
        wake-up marker left for a sleeping worker, the counters bumped.
        Differences: the created time is this process's clock (the script
        reads the server's), and a sleeper is woken on every push. The id is
        fresh, so nothing is checked; sent once (``resend=False``): after a
        lost reply the caller resends through the script, which checks.
        The state is set with ``HSETNX``: this send, run late after that
        resend created the job (a paused server, a retransmitted packet),
        rewrites only the fields that never change and leaves a second
        entry in the ready list, which a claim skips (the job is no longer
        ``queued`` when it meets it, or it is and the entry serves as well).
        None: nothing was created and the script must do it (an ACL that
        denies ``HSETNX``)."""
        jid, task, queue, prio, payload, opts, _, _, _, _, front, _, _, maxa, sig, _ = job
        k = self.keys
        now_ms = int(time.time() * 1000)
        fields: list[Arg] = ["t", task, "q", queue, "p", prio, "d", payload, "c", now_ms]
        for name, value in (("o", opts), ("m", maxa), ("g", sig)):
            if value != "":
                fields += [name, value]
        minute = now_ms // 60000
        tail, tail_replies, full = self._plain_tail(str(task), str(queue), prio, minute)
        jk = k.job(str(jid))
        data = [pack(("MULTI",)), pack(("HSET", jk, *fields)), pack(("HSETNX", jk, "s", "queued")),
                pack(("RPUSH" if front else "LPUSH", k.ready(str(queue), str(prio)), jid)), tail]
        with translate_errors(self.url):
            replies = self.wire.pipeline(((),) * (4 + tail_replies), resend=False, data=[b"".join(data)])
            result = replies[-1]
            if isinstance(result, ResponseError):  # EXECABORT: one was queued with an error, none ran
                refused = next(r for r in replies if isinstance(r, ResponseError))
                if isinstance(refused, redis.exceptions.NoPermissionError) and "'hsetnx'" in str(refused):
                    # an ACL written for an earlier taskq: the script needs no HSETNX
                    log.warning("the server's ACL denies HSETNX: plain jobs are enqueued by the script "
                                "(grant +hsetnx for the faster path, see docs/security.md)")
                    self.multi = False
                    return None
                raise refused
            for reply in result:
                if isinstance(reply, ResponseError):
                    raise reply  # a command that failed inside EXEC (a key of the wrong type)
        if full:
            self._plain_sent(str(task), str(queue), prio, minute)
        elif result[-1] == 1:
            self._plain_restore(str(queue), minute)
        return str(jid), True, "queued"

    def _plain_tail(self, task: str, queue: str, prio: Arg, minute: int) -> tuple[bytes, int, bool]:
        """The packed commands after the push (the same for every job of a
        task, queue and priority in one minute): level, queue, wake-up,
        counters, EXEC; with the number of replies they add, and whether it
        is the full set.

        Registering the queue (SADD) and the minute bucket's expiry (PEXPIRE)
        are idempotent and undone only by a wiped namespace: they go with a
        process's first job of each key in a minute and are left out once that
        call succeeded (:meth:`_plain_sent`). A wipe since then shows in the
        reply: the short tail's bucket counter comes back as 1, where the full
        tail's job had already counted; :meth:`_plain_restore` then sends both
        again. (The schedulers' trim also gives a bucket missing its expiry
        one: trim_finished.lua.)"""
        short = self._tails.get((task, queue, prio)) if minute == self._tails_minute else None
        if short is not None:
            return short[0], short[1], False
        cmds = self._plain_tail_commands(task, queue, prio, minute, register=True)
        return b"".join([pack(c) for c in cmds]), len(cmds), True

    def _plain_tail_commands(self, task: str, queue: str, prio: Arg, minute: int,
                             register: bool) -> list[tuple[Arg, ...]]:
        """The tail's commands; without ``register`` the bucket's counter is
        the last before EXEC (its reply is checked, see :meth:`_plain_tail`)."""
        k = self.keys
        notify, bucket = k.notify(queue), k.stats_minute(minute)
        cmds: list[tuple[Arg, ...]] = [("ZADD", k.priorities(queue), -int(prio), prio)]
        if register:
            cmds.append(("SADD", k.queues, queue))
        cmds += [("LPUSH", notify, 1), ("LTRIM", notify, 0, 0),
                 ("HINCRBY", k.stats_counters, f"{queue}:{task}|enqueued", 1),
                 ("HINCRBY", bucket, f"q:{queue}|enqueued", 1)]
        if register:
            cmds.append(("PEXPIRE", bucket, MINUTE_BUCKET_TTL_MS))
        cmds.append(("EXEC",))
        return cmds

    def _plain_sent(self, task: str, queue: str, prio: Arg, minute: int) -> None:
        """A full tail went through: the next jobs of its key this minute send
        the short one. (No iteration over the cache: other threads may add to
        it; a new minute starts a new dict.)"""
        if minute != self._tails_minute or len(self._tails) > 1000:
            self._tails, self._tails_minute = {}, minute
        cmds = self._plain_tail_commands(task, queue, prio, minute, register=False)
        self._tails[(task, queue, prio)] = (b"".join([pack(c) for c in cmds]), len(cmds))

    def _plain_restore(self, queue: str, minute: int) -> None:
        """The namespace was wiped since the full tail went: register the queue
        and the bucket's expiry again, and send full tails from now on. The
        job itself is enqueued already, so a failure here is only logged."""
        self._tails = {}
        try:
            with translate_errors(self.url):
                self.wire.pipeline((("SADD", self.keys.queues, queue),
                                    ("PEXPIRE", self.keys.stats_minute(minute), MINUTE_BUCKET_TTL_MS)))
        except TaskQError as exc:
            log.warning("could not register queue %r again after its namespace was wiped: %s", queue, exc)
