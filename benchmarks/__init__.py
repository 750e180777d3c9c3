"""taskq benchmarks: ``python -m benchmarks [--smoke|--quick|--full] [--only NAME]``.

Every figure runs against a throwaway server started for the run
(:class:`taskq.ephemeral.EphemeralServer`, appendonly off unless
``--appendonly``) and is printed next to a *raw floor*: a hand-written
redis-py loop doing only the round trips the operation cannot avoid, on the
same server with the same client settings as taskq's backend. A figure is
the median of several runs with the spread (min-max) shown. Targets are
printed for comparison; nothing here asserts a timing.

Figures (``--only`` takes these names, comma-separated):

``enqueue``
    ``task.delay()`` rate vs a raw ``LPUSH`` loop of the same payload.
``bulk``
    ``task.map()`` (``app.enqueue_many``) rate vs pipelined ``LPUSH`` in
    batches of 1,000.
``drain``
    Pre-enqueued jobs drained by real ``taskq worker`` processes (1 and 2)
    for a no-op task and a task making one Redis call, vs raw consumers
    (``BLMOVE src processing`` + task + ``LREM processing``). Jobs are
    enqueued *before* the worker starts and the time runs from the first
    job's start (its ``sa``, server clock) to the last finish (the newest
    score in ``{ns}:done``), so worker start-up is not counted. Raw
    consumers wait on an empty list until all are connected; the filled
    list is then ``RENAME``d into place and they report their first start
    and last finish.
``roundtrip``
    ``add.delay(1, 2).result()`` latency p50/p99 over sequential jobs
    (``tombstone=True``, one worker process) vs raw request/reply
    (``LPUSH`` request + ``BLPOP`` reply; a raw process answers).
``delayed``
    Lateness (task start minus due time) of jobs whose due times are
    spread over a window, vs a raw poller of a sorted set; and the time to
    promote a due backlog (``Scheduler.tick``) vs raw
    ``ZRANGEBYSCORE`` + ``MULTI ZREM/LPUSH`` batches.
``memory``
    Server memory per queued job beyond a 100-byte payload (``INFO memory``
    before/after) vs a minimal hash + list record, and the RSS of an idle
    worker (supervisor and child) vs an idle raw consumer.
``cluster``
    On a Cluster of 1 and of 3 masters started for the figure (same
    machine): jobs drained per second over three namespaces (one per master
    on 3), the masters' CPU per job and each master's share of the job calls,
    vs ``BLMPOP`` consumers on the same slots; the machine's core count.
"""
