"""A task module that cannot be imported: it needs a package that is not
installed. The worker must say so in one line and exit non-zero."""

from __future__ import annotations

import taskq_no_such_dependency  # noqa: F401  -- raises ImportError

from taskq import TaskQ

app = TaskQ("bad")
