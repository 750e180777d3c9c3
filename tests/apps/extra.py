"""A further task module, loaded into ``tests.apps.basic:app`` with ``--include``."""

from tests.apps.basic import app


@app.task(name="extra", tombstone=True)
def extra(x: int) -> int:
    return x * 10
