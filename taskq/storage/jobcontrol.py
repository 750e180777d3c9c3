"""Job control and result waits: one script per operation on one job."""

from __future__ import annotations

from ..errors import error_for_code
from .connection import REPLY_MARGIN, Arg, Connection, translate_errors


class JobControl(Connection):
    """Cancel, requeue, stall... and waiting for an outcome."""


    def control(self, name: str, job_id: str, *args: Arg, operation: str = "") -> str:
        """Run a job-control script returning {code, state}; raise on a negative code."""
        code, raw = self.run(name, "", job_id, *args)
        state = raw.decode() if isinstance(raw, bytes) else str(raw)
        if int(code) < 0:
            raise error_for_code(int(code), job_id, state, operation or name)
        return state

    def watch(self, job_id: str, within: float | None = None) -> tuple[str, bytes]:
        """``within``: a server that has not answered ``within + REPLY_MARGIN``
        s is ``BrokerUnavailable`` (the connection's 30 s otherwise)."""
        timeout = None if within is None else max(within, 0.0) + REPLY_MARGIN
        state, blob = self.run("watch", "", job_id, timeout=timeout)
        return state.decode(), blob

    def wait_outcome(self, job_id: str, timeout: float) -> bytes | None:
        """Block until the job's outcome is pushed (or timeout); never consumes it.
        A server that has not answered ``REPLY_MARGIN`` s after the timeout
        is ``BrokerUnavailable``."""
        key = self.keys.result(job_id)
        with translate_errors(self.url):
            timeout = max(timeout, 0.001)
            raw: bytes | None = self.wire.call("BLMOVE", key, key, "RIGHT", "LEFT", timeout,
                                               timeout=timeout + REPLY_MARGIN)
            return raw

    def set_progress(self, job_id: str, token: int, blob: bytes) -> bool:
        return bool(self.run("progress", "", job_id, token, blob))

    def purge_queue(self, queue: str, limit: int = 1000) -> int:
        return int(self.run("purge_queue", "", queue, limit))
