"""Raw-Redis floors that run in their own process:
``python -m benchmarks.raw MODE URL ARGS...``. Each prints one JSON line.

consume SRC PROCESSING READY TASK NAMESPACE
    ``BLMOVE src processing`` + task + ``LREM processing`` until SRC stays
    empty; reports its first start and last finish (epoch seconds).
calls N NAMESPACE
    The one-call task's call alone, N times, with no queue at all: the
    rate a queue whose claim and ack cost nothing could drain at (the
    ceiling of the one-call drain); reports its first start and last finish.
scripts N NAMESPACE
    taskq's own claim/ack script (``settle_claim``, batches of 100) driving
    the one-call task's call on N jobs taskq enqueued in NAMESPACE, with no
    executor, logging or timeouts around the call: the most a Python worker
    built on taskq's per-job state could reach. Imports taskq (before timing).
stateless SRC PROCESSING NAMESPACE
    A queue that keeps no per-job state: one script call per batch of 100
    claims (``RPOP`` + ``SADD`` to PROCESSING) and acks the previous batch
    (``SREM``), with the one-call task's call per job, until SRC is empty.
blmpop CLUSTER_URL SRC READY COUNT
    On a cluster (redis-py ``RedisCluster``, ``redis+cluster://h:p,...``):
    ``BLMPOP`` batches of 100 ids from SRC (the no-op task per id) until
    COUNT are taken; reports its first take and last finish.
echo REQUESTS READY
    ``BLPOP`` a reply key from REQUESTS and ``LPUSH`` an answer to it,
    until the reply key is ``stop``.
delayed SCHED READY N
    Poll the sorted set SCHED (member -> due epoch ms), sleeping until the
    first due time, and take due members with ``ZREM``; reports each one's
    lateness (ms).
"""

from __future__ import annotations

import json
import sys
import time

from redis.cluster import ClusterNode, RedisCluster

from .common import client
from .work import one_call

FIRST_WAIT = 60.0  # seconds a consumer waits for its list to be filled
EMPTY_WAIT = 0.1  # a drained list that stays empty this long ends the run


def consume(url: str, src: str, processing: str, ready: str, task: str, namespace: str) -> None:
    r = client(url)
    r.incr(ready)
    first = last = 0.0
    n = 0
    timeout = FIRST_WAIT
    while True:
        item = r.blmove(src, processing, timeout, "RIGHT", "LEFT")
        if item is None:
            break
        if not n:
            first = time.time()
            timeout = EMPTY_WAIT
        if task == "incr":
            one_call(url, namespace)
        r.lrem(processing, 1, item)
        last = time.time()
        n += 1
    print(json.dumps({"first": first, "last": last, "n": n}))


def calls(url: str, count: str, namespace: str) -> None:
    n = int(count)
    one_call(url, namespace)  # connect first, as a consumer does before its first job
    first = time.time()
    for _ in range(n):
        one_call(url, namespace)
    print(json.dumps({"first": first, "last": time.time(), "n": n}))


def cluster_client(url: str) -> RedisCluster:
    """A RedisCluster on the nodes of ``redis+cluster://h:p,h:p``, with the settings of ``client()``."""
    nodes = [ClusterNode(host, int(port)) for host, port in
             (hp.rsplit(":", 1) for hp in url.split("://", 1)[1].split("/", 1)[0].split(","))]
    return RedisCluster(startup_nodes=nodes, socket_connect_timeout=2.0, socket_timeout=FIRST_WAIT + 30,
                        protocol=2)


def blmpop(url: str, src: str, ready: str, count: str) -> None:
    r = cluster_client(url)
    r.incr(ready)
    want = int(count)
    first = last = 0.0
    n = 0
    while n < want:
        reply = r.blmpop(FIRST_WAIT, 1, src, direction="RIGHT", count=BATCH)
        if reply is None:
            break
        if not n:
            first = time.time()
        for _ in reply[1]:
            pass  # the no-op task
        n += len(reply[1])
        last = time.time()
    print(json.dumps({"first": first, "last": last, "n": n}))


def echo(url: str, requests: str, ready: str) -> None:
    r = client(url)
    r.incr(ready)
    n = 0
    while True:
        _, reply_key = r.blpop([requests], 0)
        if reply_key == b"stop":
            break
        r.lpush(reply_key, b"3")
        n += 1
    print(json.dumps({"n": n}))


def delayed(url: str, sched: str, ready: str, count: str) -> None:
    r = client(url)
    r.incr(ready)
    want = int(count)
    late: list[float] = []
    while len(late) < want:
        head = r.zrange(sched, 0, 0, withscores=True)
        if not head:
            time.sleep(0.001)
            continue
        member, due = head[0]
        wait_ms = due - time.time() * 1000
        if wait_ms > 0:
            time.sleep(min(wait_ms, 50.0) / 1000)
            continue
        if r.zrem(sched, member):
            late.append(time.time() * 1000 - due)
    print(json.dumps({"late": late}))


BATCH = 100  # jobs per claim of the two bounds below, as a taskq worker's default prefetch


def scripts(url: str, count: str, namespace: str) -> None:
    from taskq.worker.outcome import bucket_name

    from .tasks import build

    app = build(url, namespace)
    backend, s = app.backend, app.settings
    caps = (s.failed_max, s.done_max, s.error_history, int(s.succeeded_ttl * 1000))
    ttl = caps[3]
    worker = "bound-" + namespace
    one_call(url, namespace)
    backend.settle_claim(worker, 0, [], ["default"], [], caps)  # the code loaded, the connection made
    n = int(count)
    done = 0
    outcomes: list[list[object]] = []
    first = time.time()
    while True:
        _, jobs = backend.settle_claim(worker, BATCH, outcomes, ["default"], [], caps)
        outcomes = []
        if not jobs:
            break
        for job in jobs:
            t = time.perf_counter()
            one_call(url, namespace)
            ms = (time.perf_counter() - t) * 1000
            outcomes.append([job[0], job[1], "ok", b"", 0, ttl, 0, int(ms), bucket_name(ms), ""])
        done += len(jobs)
    last = time.time()
    backend.settle_claim(worker, 0, outcomes, ["default"], [], caps)
    if done != n:
        raise SystemExit(f"claimed {done} jobs of {n}")
    print(json.dumps({"first": first, "last": last, "n": done}))


STATELESS = """
if #ARGV > 1 then redis.call('SREM', KEYS[2], unpack(ARGV, 2)) end
if ARGV[1] == '0' then return {} end
local ids = redis.call('RPOP', KEYS[1], ARGV[1])
if not ids then return {} end
redis.call('SADD', KEYS[2], unpack(ids))
return ids
"""


def stateless(url: str, src: str, processing: str, namespace: str) -> None:
    r = client(url)
    claim_ack = r.register_script(STATELESS)
    one_call(url, namespace)
    claim_ack(keys=[src, processing], args=[0])  # the script loaded
    done = 0
    acks: list[bytes] = []
    first = time.time()
    while True:
        ids = claim_ack(keys=[src, processing], args=[BATCH, *acks])
        if not ids:
            break
        for _ in ids:
            one_call(url, namespace)
        acks = ids
        done += len(ids)
    last = time.time()
    claim_ack(keys=[src, processing], args=[0, *acks])
    print(json.dumps({"first": first, "last": last, "n": done}))


MODES = {"consume": consume, "calls": calls, "scripts": scripts, "stateless": stateless, "blmpop": blmpop,
         "echo": echo, "delayed": delayed}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
