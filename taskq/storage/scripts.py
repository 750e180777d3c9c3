"""Loads the Lua scripts once and runs them by SHA.

Each script is ``lua/_lib.lua`` followed by its own file; the library holds
the functions several transitions share (finalize, push_ready...).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

SCRIPT_NAMES = (
    "enqueue",
    "settle_claim",
    "heartbeat",
    "reap_worker",
    "release_orphans",
    "promote",
    "fire_periodic",
    "cancel",
    "requeue",
    "stall",
    "unstall",
    "remove",
    "watch",
    "purge_queue",
    "trim_finished",
    "progress",
)


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str


def _read(name: str) -> str:
    return resources.files("taskq.storage").joinpath("lua", name).read_text("utf-8")


@cache
def load_scripts() -> dict[str, Script]:
    """Every script, keyed by name, with its SHA1 computed locally."""
    lib = _read("_lib.lua")
    out = {}
    for name in SCRIPT_NAMES:
        src = lib + "\n" + _read(f"{name}.lua")
        out[name] = Script(name, src, hashlib.sha1(src.encode()).hexdigest())
    return out
