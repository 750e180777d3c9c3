"""Raw-Redis floors that run in their own process:
``python -m benchmarks.raw MODE URL ARGS...``. Each prints one JSON line.

consume SRC PROCESSING READY TASK NAMESPACE
    ``BLMOVE src processing`` + task + ``LREM processing`` until SRC stays
    empty; reports its first start and last finish (epoch seconds).
calls N NAMESPACE
    The one-call task's call alone, N times, with no queue at all: the
    rate a queue whose claim and ack cost nothing could drain at (the
    ceiling of the one-call drain); reports its first start and last finish.
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


MODES = {"consume": consume, "calls": calls, "echo": echo, "delayed": delayed}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
