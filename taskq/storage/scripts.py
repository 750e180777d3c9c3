"""Builds the Lua code from ``lua/``: one function library and, for servers
without functions (Redis < 7, or an ACL that denies FUNCTION), one script
per transition.

Both forms run the same code: ``lua/_lib.lua`` (shared functions and the
per-call ``begin()``) and the body of each ``lua/<name>.lua``. In the
library ``_lib.lua`` runs once when loaded, so a call pays only for its own
work. Names carry a hash of the code, so several taskq versions can share a
server during a rolling deploy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

SCRIPT_NAMES = (
    "enqueue",
    "deliver",
    "attach",
    "settle_claim",
    "heartbeat",
    "reap_worker",
    "reaper_pass",
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
    "enqueue_flow",
    "flow_pass",
)

# Transitions that only free memory: allowed to run on a server out of memory
# (`maxmemory` reached), so an operator can make room by deleting jobs.
# (Standalone scripts need no flag: the server refuses only their commands
# that may grow memory, and these use none but for a few bytes of counters.)
FREES_MEMORY = frozenset({"remove", "purge_queue", "trim_finished"})


@dataclass(frozen=True)
class Script:
    name: str
    source: str  # standalone script (EVAL/EVALSHA)
    sha: str
    function: str  # its name in the function library (FCALL)


@dataclass(frozen=True)
class Library:
    name: str
    source: str  # for FUNCTION LOAD
    scripts: dict[str, Script]


def _read(name: str) -> str:
    return resources.files("taskq.storage").joinpath("lua", name).read_text("utf-8")


@cache
def load_library() -> Library:
    lib = _read("_lib.lua")
    bodies = {name: _read(f"{name}.lua") for name in SCRIPT_NAMES}
    digest = hashlib.sha1((lib + "".join(bodies.values())).encode()).hexdigest()[:12]
    lib_name = f"taskq_{digest}"
    scripts: dict[str, Script] = {}
    registrations = []
    for name, body in bodies.items():
        source = f"local _KEYS, _ARGV = KEYS, ARGV\n{lib}\nbegin(_KEYS, _ARGV)\n{body}"
        function = f"{lib_name}_{name}"
        scripts[name] = Script(name, source, hashlib.sha1(source.encode()).hexdigest(), function)
        flags = ", flags = {'allow-oom'}" if name in FREES_MEMORY else ""
        registrations.append(
            f"redis.register_function{{function_name = '{function}', callback = function(keys, args)\n"
            f"begin(keys, args)\n{body}\nend{flags}}}\n"
        )
    source = f"#!lua name={lib_name}\n{lib}\n" + "\n".join(registrations)
    return Library(lib_name, source, scripts)


def load_scripts() -> dict[str, Script]:
    """Every script, keyed by name."""
    return load_library().scripts
