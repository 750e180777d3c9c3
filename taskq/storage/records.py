"""The records that cross the storage boundary, and the job hash's field
names: the one place outside the Lua code that knows them.

``lua/_lib.lua`` lists the same names in its header; a test checks that the
two agree. Callers get typed values: ids and names as ``str``, times as
integer milliseconds, counts as ``int``; blobs (payload, options, result,
errors, progress) stay msgpack ``bytes`` for the caller's codec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple


class Field:
    """Job hash field names (short: they are stored once per job)."""

    TASK = "t"
    QUEUE = "q"
    PRIORITY = "p"
    PAYLOAD = "d"
    OPTIONS = "o"
    STATE = "s"
    CREATED = "c"
    ATTEMPTS = "a"
    TOKEN = "k"
    WORKER = "w"
    STARTED = "sa"
    FINISHED = "f"
    DUE = "due"
    UNIQUE_KEY = "u"
    RESOURCE = "r"
    ON_LOCKED = "ol"
    MAX_ATTEMPTS = "m"
    SIGNATURE = "g"
    RESULT = "res"
    ERRORS = "err"
    PROGRESS = "pr"
    REQUEUES = "rq"
    CANCELS = "cc"
    CANCEL_REQUESTED = "cr"
    SKIPPED_BY = "sk"
    WATCHED = "wt"
    STALLED_FROM = "ps"
    FRONT = "fr"
    LOST = "lc"
    MARK = "n"
    # workflows (see lua/_lib.lua)
    PARENTS = "pa"
    DEPENDENCY_COUNT = "dn"
    DEPENDENCY_VALUES = "dm"
    ON_DEPENDENCY_FAILURE = "df"
    OPEN = "op"
    WORKFLOW_KIND = "wk"
    OWN_TTLS = "tt"
    CAUSE = "dc"
    CAUSE_INFO = "di"  # msgpack [root id, task, state, error type, message] of its cause
    WORKFLOW_QUEUES = "wq"  # a handle's other queues holding jobs of its workflow (space-separated)
    LINK_ERROR = "le"
    FLOW = "fc"
    PARKED = "pk"
    RELEASE_DELAY = "rd"  # a waiting job's "<delay_ms>:<eta_ms>", applied when it is released
    REQUEUE_REQUESTED = "rr"  # requeued while it ran: queued when the attempt ends (1, or 2: front)


JOB_FIELDS = {name: value for name, value in vars(Field).items() if name.isupper()}


def _int(raw: bytes | None) -> int:
    """A count (a garbled one, not written by taskq, reads as 0)."""
    try:
        return int(raw) if raw else 0
    except ValueError:
        return 0


def _ms(raw: bytes | None) -> int | None:
    """A time in ms (a garbled one reads as None)."""
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


@dataclass(frozen=True)
class JobRecord:
    """One job as stored."""

    id: str
    state: str
    task: str
    queue: str
    priority: int
    payload: bytes
    options: bytes | None
    created_ms: int | None
    started_ms: int | None
    finished_ms: int | None
    due_ms: int | None
    attempts: int
    lost_count: int
    token: int
    worker: str | None
    unique_key: str | None
    resource: str | None
    result: bytes | None
    errors: bytes | None
    progress: bytes | None
    requeue_count: int
    cancel_count: int
    cancel_requested: bool
    skipped_by: str | None
    parents: bytes | None = None  # msgpack [parent id, index, ...]
    dependency_count: int = 0
    workflow_kind: str | None = None
    cause: str | None = None
    requeue_requested: bool = False
    workflow_queues: tuple[str, ...] = ()

    @classmethod
    def from_hash(cls, job_id: str, h: Mapping[Any, bytes]) -> JobRecord | None:
        """The record of a job hash (keys ``str`` or ``bytes``); None if it
        holds no job (no state)."""
        raw = {k.decode() if isinstance(k, bytes) else k: v for k, v in h.items()}
        if Field.STATE not in raw:
            return None

        def text(k: str) -> str | None:
            return raw[k].decode("utf-8", "replace") if k in raw else None

        f = Field
        return cls(
            id=job_id, state=raw[f.STATE].decode(), task=text(f.TASK) or "", queue=text(f.QUEUE) or "",
            priority=_int(raw.get(f.PRIORITY)), payload=raw.get(f.PAYLOAD, b""), options=raw.get(f.OPTIONS),
            created_ms=_ms(raw.get(f.CREATED)), started_ms=_ms(raw.get(f.STARTED)),
            finished_ms=_ms(raw.get(f.FINISHED)), due_ms=_ms(raw.get(f.DUE)),
            attempts=_int(raw.get(f.ATTEMPTS)), lost_count=_int(raw.get(f.LOST)), token=_int(raw.get(f.TOKEN)),
            worker=text(f.WORKER), unique_key=text(f.UNIQUE_KEY), resource=text(f.RESOURCE),
            result=raw.get(f.RESULT), errors=raw.get(f.ERRORS), progress=raw.get(f.PROGRESS),
            requeue_count=_int(raw.get(f.REQUEUES)), cancel_count=_int(raw.get(f.CANCELS)),
            cancel_requested=f.CANCEL_REQUESTED in raw, skipped_by=text(f.SKIPPED_BY),
            parents=raw.get(f.PARENTS), dependency_count=_int(raw.get(f.DEPENDENCY_COUNT)),
            workflow_kind=text(f.WORKFLOW_KIND), cause=text(f.CAUSE),
            requeue_requested=f.REQUEUE_REQUESTED in raw,
            workflow_queues=tuple((text(f.WORKFLOW_QUEUES) or "").split()),
        )


class ClaimedJob:
    """A leased job as the claim script returns it (id, fencing token,
    attempt, task, payload, per-call options, signature, queue)."""

    __slots__ = ("attempt", "id", "opts", "payload", "queue", "sig", "task", "token")

    def __init__(self, row: list[Any]) -> None:
        self.id: str = row[0].decode()
        self.token = int(row[1])
        self.attempt = int(row[2])
        self.task: str = row[3].decode("utf-8", "replace")
        self.payload: bytes = row[4]
        self.opts: bytes = row[5]
        self.sig: str = row[6].decode("ascii", "replace")
        self.queue: str = row[7].decode("utf-8", "replace")


class EnqueueRequest(NamedTuple):
    """One job to create, in the order the enqueue script takes its fields
    (see ``lua/enqueue.lua``)."""

    id: str
    task: str
    queue: str
    priority: int
    payload: bytes
    options: bytes | str  # msgpack of the per-call options, or ""
    delay_ms: int
    eta_ms: int
    unique_key: str
    unique_ttl_ms: int
    front: int  # 1 | 0
    resource: str
    on_locked: str
    max_attempts: int | str  # "" when not given per call
    signature: str
    flow: str  # flow-control spec (see ``lua/_lib.lua``), or ""
