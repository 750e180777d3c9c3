"""Optional HMAC-SHA256 signing of job payloads (``TaskQ(secret_key=...)``)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from .errors import SignatureError


def sign(key: str, job_id: str, task: str, payload: bytes) -> str:
    msg = job_id.encode() + b"\0" + task.encode() + b"\0" + payload
    return hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()


def verify(keys: Sequence[str], job_id: str, task: str, payload: bytes, signature: str) -> None:
    """Raise SignatureError unless ``signature`` matches one of ``keys``."""
    if not signature:
        raise SignatureError("job is not signed, and this worker requires signed jobs (secret_key is set)")
    for key in keys:
        if hmac.compare_digest(sign(key, job_id, task, payload), signature):
            return
    raise SignatureError("job signature does not match any accepted key (tampered, or signed with an unknown key)")
