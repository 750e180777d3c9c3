"""The state invariants of docs/architecture.md, checked on one atomic
snapshot of a namespace (a read-only script dumps every key but the
statistics and result lists). Used by the storage fuzz test and by
``tests/chaos/stress.py``."""

from __future__ import annotations

import collections
from typing import Any

from taskq import TaskQ

DUMP = r"""
local P = KEYS[1]
local out = {}
for _, k in ipairs(redis.call('KEYS', P .. '*')) do
  local rest = string.sub(k, #P + 1)
  if string.sub(rest, 1, 3) ~= 'st:' and string.sub(rest, 1, 2) ~= 'r:' and string.sub(rest, 1, 5) ~= 'test:' then
    local t = redis.call('TYPE', k)['ok']
    local v = {}
    if t == 'hash' then v = redis.call('HGETALL', k)
    elseif t == 'list' then v = redis.call('LRANGE', k, 0, -1)
    elseif t == 'zset' then v = redis.call('ZRANGE', k, 0, -1)
    elseif t == 'set' then v = redis.call('SMEMBERS', k)
    elseif t == 'string' then v = {redis.call('GET', k)} end
    out[#out + 1] = rest; out[#out + 1] = t; out[#out + 1] = v
  end
end
return out
"""

LIVE = {"scheduled", "queued", "active", "waiting", "stalled"}
FINISHED_IN = {"succeeded": "done", "cancelled": "done", "skipped": "done", "failed": "failed"}


def snapshot(app: TaskQ) -> dict[str, Any]:
    """Every job-state key of the namespace (name without the prefix -> value), read in one step."""
    raw = app.backend.client.eval(DUMP, 1, app.backend.prefix)
    snap: dict[str, Any] = {}
    for i in range(0, len(raw), 3):
        name, typ = raw[i].decode(), raw[i + 1].decode()
        val = [x.decode("latin-1") for x in raw[i + 2]]
        if typ == "hash":
            snap[name] = dict(zip(val[::2], val[1::2]))
        elif typ == "string":
            snap[name] = val[0]
        elif typ in ("zset", "set"):
            snap[name] = set(val)
        else:
            snap[name] = val
    return snap


def jobs_of(snap: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {k[2:]: v for k, v in snap.items() if k.startswith("j:")}


def violations(snap: dict[str, Any], idle: bool = False) -> list[str]:
    """What is wrong in ``snap``. ``idle``: no worker runs and every due job
    was promoted, so nothing may be queued, active, waiting or scheduled."""
    bad = []
    jobs = jobs_of(snap)

    def named(prefix: str) -> dict[str, Any]:
        return {k[len(prefix):]: v for k, v in snap.items() if k.startswith(prefix)}

    ready, levels, wj, locks, waiters, uniq = (named(p) for p in ("q:", "qp:", "wj:", "l:", "lw:", "u:"))
    workers = snap.get("workers", set())
    where: dict[str, list[str]] = collections.defaultdict(list)
    for name, ids in ready.items():
        for i in ids:
            where[i].append("q:" + name)
    for index in ("sched", "stalled", "done", "failed"):
        for i in snap.get(index, ()):
            where[i].append(index)
    for w, ids in wj.items():
        for i in ids:
            where[i].append("wj:" + w)
    for r, ids in waiters.items():
        for i in ids:
            where[i].append("lw:" + r)
    for jid, h in jobs.items():
        s = h.get("s")
        want = {"queued": f"q:{h.get('q')}:{h.get('p')}", "scheduled": "sched", "stalled": "stalled",
                "waiting": f"lw:{h.get('r')}", "active": f"wj:{h.get('w')}"}.get(s) or FINISHED_IN.get(s)
        if want is None:
            bad.append(f"job {jid} in unknown state {s!r}")
            continue
        # a finished index may still hold an entry of an earlier job of a reused
        # id (its hash expired) until trim_finished drops it
        idx = [x for x in where.get(jid, []) if x not in ("done", "failed") or x == want]
        # a finished job whose entry the index's cap trimmed stays until its TTL
        if idx != [want] and not (s in FINISHED_IN and idx == []):
            bad.append(f"job {jid} ({s}) is in {where.get(jid, [])}, not only in {want}")
        if s == "active":
            if h.get("w") not in workers:
                bad.append(f"active job {jid} is leased to {h.get('w')}, which is not a registered worker")
            if h.get("r") and locks.get(h["r"]) != jid:
                bad.append(f"active job {jid} runs without the lock of {h['r']} (held by {locks.get(h['r'])})")
        if h.get("rr") and s != "active":
            bad.append(f"job {jid} ({s}) still carries a requeue asked for while it ran")
        if idle and s in ("queued", "active", "waiting", "scheduled"):
            bad.append(f"job {jid} still {s} with the workers idle")
    for i, idx in where.items():
        if i not in jobs and any(x not in ("done", "failed") for x in idx):
            bad.append(f"job {i} does not exist but is in {idx}")
    for name, ids in ready.items():
        q, _, p = name.rpartition(":")
        if ids and p not in levels.get(q, set()):
            bad.append(f"ready list {name} is not empty but its level is not registered")
    for res, holder in locks.items():
        h = jobs.get(holder, {})
        if h.get("s") != "active" or h.get("r") != res:
            bad.append(f"lock {res} is held by {holder}, which is {h.get('s')} (resource {h.get('r')})")
    for res, ids in waiters.items():
        waiting = [i for i in ids if jobs.get(i, {}).get("s") == "waiting"]
        if waiting and res not in locks and not any(
                h.get("r") == res and h.get("s") == "queued" for h in jobs.values()):
            bad.append(f"resource {res} is free, {waiting} wait for it and none of its jobs is queued")
    for key, holder in uniq.items():
        h = jobs.get(holder, {})
        if h.get("s") not in LIVE or h.get("u") != key:
            bad.append(f"unique key {key} points at {holder} ({h.get('s')}, key {h.get('u')})")
    for w, ids in wj.items():
        if ids and w not in workers:
            bad.append(f"{w} holds leases {sorted(ids)} but is not a registered worker")
    return bad
