"""Signatures and the canvas: calls not yet made, and the workflows built
from them (``chain``, ``group``, ``chord``).

A :class:`Signature` is plain data (task name, args, kwargs, options) that
round-trips through msgpack (:meth:`Signature.to_dict`). Nothing is sent
until ``.delay()`` / ``.apply_async()``; see ``taskq.flowplan`` for how a
canvas becomes jobs and ``docs/workflows.md`` for the semantics.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from .appview import AppView
from .errors import ConfigurationError
from .workflow import Workflow


class FlowApp(AppView, Protocol):
    """What a canvas needs of its app: :class:`AppView` and launching a workflow."""

    def launch_workflow(self, canvas: Canvas, *, link_error: Signature | None = None,
                        defaults: Mapping[str, Any] | None = None) -> Workflow[Any]: ...

# Options a signature may carry besides the task's flags (``countdown`` is
# ``delay`` under Celery's name; ``delay`` and ``eta`` of a step that waits
# for others count from when they finished).
PLACEMENT = frozenset({"job_id", "eta", "countdown"})


class Canvas:
    """What signatures, chains, groups and chords share."""

    app: FlowApp

    def __or__(self, other: Canvas) -> Canvas:
        if not isinstance(other, Canvas):
            return NotImplemented
        if isinstance(self, Group):
            return Chord(self, other)
        left = self.steps if isinstance(self, Chain) else (self,)
        right = other.steps if isinstance(other, Chain) else (other,)
        return Chain(*left, *right)

    def delay(self) -> Workflow[Any]:
        """Enqueue the whole workflow; returns its handle."""
        return self.apply_async()

    def apply_async(self, *, link_error: Signature | None = None, **defaults: Any) -> Workflow[Any]:
        """Enqueue the whole workflow. ``defaults``: options for every job
        of it that does not set its own (``queue=``, ``priority=``, ...);
        ``link_error``: a signature run once if the workflow fails for good
        (it receives the failed job's id first, unless immutable)."""
        return self.app.launch_workflow(self, link_error=link_error, defaults=defaults)


class Signature(Canvas):
    """A call of task ``task`` not yet made. In a chain it receives the
    previous step's value as its first argument unless ``immutable``."""

    __slots__ = ("app", "args", "immutable", "kwargs", "options", "task")

    def __init__(self, app: FlowApp, task: str, args: Iterable[Any] = (), kwargs: Mapping[str, Any] | None = None,
                 options: Mapping[str, Any] | None = None, immutable: bool = False) -> None:
        if not isinstance(task, str) or not task:
            raise ConfigurationError(f"a signature needs a task name, not {task!r}")
        self.app = app
        self.task = task
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.options = dict(options or {})
        self.immutable = bool(immutable)

    def __repr__(self) -> str:
        mark = "si" if self.immutable else "s"
        return f"<Signature {self.task}.{mark}{self.args!r} {self.kwargs!r} {self.options!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Signature) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def set(self, **options: Any) -> Signature:
        """A copy with per-call options (``queue=``, ``priority=``, ``delay=`` / ``countdown=``, ``eta=``,
        ``retry=``, ``job_id=``...)."""
        return Signature(self.app, self.task, self.args, self.kwargs, {**self.options, **options}, self.immutable)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (msgpack-encodable with taskq's codec)."""
        return {"task": self.task, "args": list(self.args), "kwargs": dict(self.kwargs),
                "options": dict(self.options), "immutable": self.immutable}

    @classmethod
    def from_dict(cls, app: FlowApp, data: Mapping[str, Any]) -> Signature:
        return cls(app, data["task"], data.get("args", ()), data.get("kwargs"), data.get("options"),
                   bool(data.get("immutable", False)))


class Chain(Canvas):
    """Steps run one after another, each given the previous one's value."""

    def __init__(self, *steps: Canvas) -> None:
        if not steps:
            raise ConfigurationError("a chain needs at least one step")
        for s in steps:
            if not isinstance(s, Canvas):
                raise ConfigurationError(f"a chain step must be a signature or canvas, not {type(s).__name__}")
        self.steps: tuple[Canvas, ...] = tuple(steps)
        self.app = steps[0].app

    def __repr__(self) -> str:
        return f"chain({', '.join(map(repr, self.steps))})"


class Group(Canvas):
    """Members run in parallel; its value is the list of theirs, in member order."""

    def __init__(self, *members: Canvas | Iterable[Canvas]) -> None:
        flat: list[Canvas] = []
        for m in members:
            if isinstance(m, Canvas):
                flat.append(m)
            else:
                flat.extend(m)
        if not flat:
            raise ConfigurationError("a group needs at least one member")
        for m in flat:
            if not isinstance(m, Canvas):
                raise ConfigurationError(f"a group member must be a signature or canvas, not {type(m).__name__}")
        self.members: tuple[Canvas, ...] = tuple(flat)
        self.app = flat[0].app

    def __repr__(self) -> str:
        return f"group(<{len(self.members)} members>)"


class Chord(Canvas):
    """A group, then ``body`` once every member succeeded, given their values in member order."""

    def __init__(self, header: Group | Iterable[Canvas], body: Canvas) -> None:
        self.header = header if isinstance(header, Group) else Group(header)
        if not isinstance(body, Canvas):
            raise ConfigurationError(f"a chord's body must be a signature or canvas, not {type(body).__name__}")
        self.body = body
        self.app = self.header.app

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"


def chain(*steps: Canvas | Iterable[Canvas]) -> Chain:
    """``chain(a.s(1), b.s(), c.s())``, the same as ``a.s(1) | b.s() | c.s()``."""
    flat: list[Canvas] = []
    for s in steps:
        flat.extend([s] if isinstance(s, Canvas) else s)
    return Chain(*flat)


def group(*members: Canvas | Iterable[Canvas]) -> Group:
    """``group(a.s(i) for i in range(1000))``."""
    return Group(*members)


def chord(header: Group | Iterable[Canvas], body: Canvas) -> Chord:
    """``chord(group(...), callback.s())``, the same as ``group(...) | callback.s()``."""
    return Chord(header, body)
