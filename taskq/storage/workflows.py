"""Workflows in storage: creating the jobs of a chain, group, chord or a job
with dependencies (``enqueue_flow``), and reading the links between them.

What a finishing job does to the jobs waiting for it happens inside the
scripts that finish jobs (``lua/_lib.lua``, workflows section), not here.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack

from ..errors import JobNotFound
from .connection import Arg, Connection, translate_errors
from .records import EnqueueRequest

FLOW_FIELDS = 26  # per row, see lua/enqueue_flow.lua
FLOW_CHUNK = 1000  # rows per call
OUTBOX_BATCH = 500  # entries applied per call (lua/deliver.lua)


@dataclass
class FlowRow:
    """One job of a workflow as ``enqueue_flow.lua`` takes it."""

    job: EnqueueRequest
    kind: str = ""  # '' a job that runs | chain | group | chord (a handle)
    # (parent id, index) or, for a parent in another queue's slot, (parent id, index, its queue)
    parents: list[tuple[str, int] | tuple[str, int, str]] | None = None
    dependency_count: int = 0
    values: str = ""  # '' | one | all | err
    on_failure: str = "cancel"  # cancel | run | collect | onfail
    ttls: str = ""  # "<succeeded ttl_ms>:<failed ttl_ms>"
    existing: list[tuple[str, int]] | None = None
    handle: str = ""
    remote: list[str] | None = None  # its dependencies created in other queues' slots
    other_queues: str = ""  # a handle's: the other queues holding jobs of its workflow

    def fields(self) -> list[Arg]:
        def pairs(items: list[tuple[str, int]] | None) -> bytes | str:
            return msgpack.packb([x for pair in items for x in pair]) if items else ""

        parents: bytes | str = ""
        if self.parents:
            parents = msgpack.packb([x for p in self.parents for x in (p[0], p[1] if len(p) == 2 else [p[1], p[2]])])
        return [*self.job, self.kind, parents, self.dependency_count, self.values, self.on_failure,
                self.ttls, pairs(self.existing), self.handle, msgpack.packb(self.remote) if self.remote else "",
                self.other_queues]


def rows_args(rows: Sequence[Sequence[Arg]], width: int) -> list[Arg]:
    """One group of rows: the first as template and, per row, only the
    columns that differ between rows (see enqueue.lua)."""
    n = len(rows)
    columns = list(zip(*rows))
    cols = [c for c in range(width) if columns[c].count(columns[c][0]) != n]
    template = list(rows[0])
    for c in cols:
        template[c] = ""
    args: list[Arg] = [n, " ".join(str(c + 1) for c in cols), *template]
    args.extend(itertools.chain.from_iterable(zip(*[columns[c] for c in cols])))
    return args


@dataclass(frozen=True)
class Links:
    """A job's place in a workflow."""

    parents: list[str]  # jobs waiting for it
    pending: list[str]  # its dependencies not yet finished
    members: list[str]  # a handle's jobs (at most ``limit``)
    member_count: int


class Workflows(Connection):
    """Creating workflows and reading their links."""

    def enqueue_flow(self, rows: Sequence[FlowRow], seal: Sequence[str], existing: Sequence[str] = ()) -> int:
        """Create the rows (parents first), ``FLOW_CHUNK`` per call, and seal
        ``seal`` with the last call. ``existing``: ids of jobs some row
        depends on; ``JobNotFound`` (nothing written) if one does not exist.
        Returns the number of calls made."""
        chunks = [rows[i:i + FLOW_CHUNK] for i in range(0, len(rows), FLOW_CHUNK)] or [[]]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            check = list(existing) if i == 0 else []
            args: list[Arg] = ["", len(check), *check]
            if chunk:
                args += rows_args([r.fields() for r in chunk], FLOW_FIELDS)
            else:
                args += [0, "", *[""] * FLOW_FIELDS]
            sealed = list(seal) if last else []
            args += [len(sealed), *sealed]
            reply = self.run_retrying("enqueue_flow", *args)
            if int(reply[0]) < 0:
                raise JobNotFound(f"no job {reply[1].decode()!r} to depend on (never created, deleted, or "
                                  "expired); nothing was enqueued")
        return len(chunks)

    def attach(self, job_id: str, parent: str, index: int, parent_queue: str) -> bool:
        """Job ``parent`` of ``parent_queue``'s slot waits for ``job_id`` of
        this one (see lua/attach.lua); False if there is no such job."""
        return int(self.run_retrying("attach", "", job_id, parent, index, parent_queue)) == 1

    def outbox(self, limit: int = OUTBOX_BATCH) -> list[bytes]:
        """The first entries of this slot's outbox, for other slots (lua/_lib.lua)."""
        with translate_errors(self.url):
            return list(self.client.lrange(self.keys.outbox, 0, limit - 1))

    def outbox_done(self, entries: Sequence[bytes]) -> None:
        """Removes entries applied where they go (each once: another
        deliverer may have removed some already)."""
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for e in entries:
                pipe.lrem(self.keys.outbox, 1, e)
            pipe.execute()

    def deliver(self, entries: Sequence[bytes], caps: tuple[int, int, int]) -> int:
        """Applies outbox entries of other slots to this one's jobs
        (lua/deliver.lua; idempotent). ``caps``: done, failed, error history."""
        return int(self.run_retrying("deliver", "", *caps, *entries))

    def links(self, job_id: str, limit: int = 1000) -> Links:
        """Parents, pending dependencies and (for a handle) members of a job."""
        k = self.keys
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            pipe.hget(k.job(job_id), "pa")
            pipe.smembers(k.pending_dependencies(job_id))
            pipe.lrange(k.workflow_members(job_id), 0, limit - 1)
            pipe.llen(k.workflow_members(job_id))
            raw_pa, pending, members, count = pipe.execute()
        parents: list[str] = []
        if raw_pa:
            try:
                flat = msgpack.unpackb(raw_pa, raw=False)
                parents = [str(x) for x in flat[::2]]
            except (ValueError, msgpack.ExtraData, TypeError):
                parents = []
        return Links(parents, sorted(p.decode() for p in pending), [m.decode() for m in members], int(count))

    def dependency_outcomes(self, job_id: str) -> dict[str, bytes]:
        """What a waiting job's (or handle's) finished dependencies left (see ``dv`` in lua/_lib.lua)."""
        with translate_errors(self.url):
            raw = self.client.hgetall(self.keys.dependency_values(job_id))
        return {key.decode(): v for key, v in raw.items()}
