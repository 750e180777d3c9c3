"""The tasks of ``tests.apps.basic`` with settings that name a task no one
has: the worker warns about it at start."""

from tests.apps.basic import build

app = build(task_flags={"no.such.task": {"retry": 1}})
