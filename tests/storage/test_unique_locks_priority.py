"""Unique jobs and custom ids (enqueue.lua), resource locks (settle_claim.lua,
release on every way a lease ends), and priority order of claims.
"""

from __future__ import annotations

import threading

import pytest

from taskq import JobState
from taskq.worker.outcome import Outcome, error_entry
from tests.apps.control import build, consumer, run_until, scratch_key, stop
from tests.conftest import wait_for
from tests.storage.invariants import snapshot, violations

LOST = error_entry(None, 0, kind="lost", exc_type="WorkerLost", message="worker lost")


@pytest.fixture
def peers(redis_url, namespace):
    """More app instances on the same namespace (other producers, other workers)."""
    apps = []

    def make():
        app = build(redis_url, namespace)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


def caps(app):
    s = app.settings
    return (s.failed_max, s.done_max, s.error_history, int(s.succeeded_ttl * 1000))


def claim(app, worker="w1", count=1, queues=("default",)):
    return app.backend.settle_claim(worker, count, [], list(queues), [], caps(app))[1]


def settle(app, worker, outcome):
    return app.backend.settle_claim(worker, 0, [outcome.fields()], ["default"], [], caps(app))[0]


def reap(app, worker):
    return app.backend.reap_worker(worker, expected_hb=None, caps=(100, 10, 60_000), lost_blob=LOST)


# ---------------------------------------------------------------- unique jobs


@pytest.fixture
def uniq(capp):
    @capp.task(name="uniq", unique=True)
    def uniq(n: int) -> None:
        return None

    return uniq


@pytest.mark.parametrize("state", ["scheduled", "queued", "active"])
def test_unique_task_returns_the_live_job_instead_of_a_second(capp, uniq, state):
    first = uniq.apply_async((1,), delay=60 if state == "scheduled" else 0)
    if state == "active":
        claim(capp)
    assert first.state == state
    second = uniq.delay(1)
    assert (second.id, second.created, first.created) == (first.id, False, True)
    assert uniq.delay(2).created  # other arguments, other key
    assert capp.backend.task_counters()["uniq|enqueued"] == 2


def test_unique_task_keyword_arguments_in_another_order_are_the_same_arguments(capp):
    @capp.task(name="uniq_kw", unique=True)
    def uniq_kw(a: int = 0, b: int = 0, c: int = 0) -> None:
        return None

    first = uniq_kw.delay(a=1, b=2, c=3)
    for again in (uniq_kw.delay(c=3, a=1, b=2), uniq_kw.apply_async(kwargs={"b": 2, "c": 3, "a": 1}),
                  uniq_kw.map([{"c": 3, "b": 2, "a": 1}])[0]):
        assert (again.id, again.created) == (first.id, False)
    assert uniq_kw.delay(a=1, b=2, c=4).created  # other arguments, other key


def test_unique_key_given_per_call(capp):
    a = capp.tasks["noop"].apply_async((1,), unique_key="report:7")
    b = capp.tasks["echo"].apply_async((2,), unique_key="report:7")  # any task, same key
    assert (b.id, b.created) == (a.id, False)
    assert capp.job(a.id).info().unique_key == "report:7"


@pytest.mark.parametrize("end", ["success", "failure", "cancel", "delete", "retract"])
def test_unique_key_frees_when_the_job_ends(capp, end):
    task = "fail" if end == "failure" else "noop"
    job = capp.tasks[task].apply_async(unique_key="k")
    if end in ("success", "failure"):
        c = consumer(capp)
        run_until(c, lambda: job.state.finished)
        stop(c)
        assert job.state == (JobState.SUCCEEDED if end == "success" else JobState.FAILED)
    else:
        getattr(job, end)()
    assert not capp.backend.client.exists(capp.backend.keys.unique("k"))
    again = capp.tasks[task].apply_async(unique_key="k")
    assert again.created and again.id != job.id


def test_unique_key_survives_a_retry_and_a_reap_until_attempts_are_exhausted(capp):
    capp.backend.register_tasks({"noop": "2:0"})  # max_lost 0: each loss uses an attempt
    job = capp.tasks["noop"].apply_async(unique_key="k")
    claim(capp, "w1")
    assert reap(capp, "w1") == {job.id: "queued"}
    assert capp.tasks["noop"].apply_async(unique_key="k").created is False
    claim(capp, "w2")
    assert reap(capp, "w2") == {job.id: "failed"}  # attempt 2 of 2: the worker death ends it
    assert not capp.backend.client.exists(capp.backend.keys.unique("k"))
    assert capp.tasks["noop"].apply_async(unique_key="k").created


def test_unique_ttl_bounds_the_key(capp):
    job = capp.tasks["noop"].apply_async(unique_key="k", unique_ttl=0.2)
    assert 0 < capp.backend.client.pttl(capp.backend.keys.unique("k")) <= 200
    wait_for(lambda: not capp.backend.client.exists(capp.backend.keys.unique("k")), what="key expiry")
    other = capp.tasks["noop"].apply_async(unique_key="k")
    assert other.created and other.id != job.id


def test_concurrent_producers_create_one_job_per_unique_key(capp, peers):
    producers = [peers() for _ in range(4)]
    rounds = 40
    results: list[list[tuple[str, bool]]] = [[] for _ in range(rounds)]
    barrier = threading.Barrier(len(producers))

    def produce(app) -> None:
        for i in range(rounds):
            barrier.wait(10)
            job = app.tasks["noop"].apply_async((i, id(app)), unique_key=f"key-{i}")
            results[i].append((job.id, job.created))

    threads = [threading.Thread(target=produce, args=(p,)) for p in producers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for row in results:
        assert len(row) == len(producers)
        assert len({jid for jid, _ in row}) == 1
        assert sum(created for _, created in row) == 1
    assert len(capp.backend.ready_ids("default", 1000)) == rounds


def test_custom_job_id_returns_the_existing_job(capp):
    first = capp.tasks["echo"].apply_async((1,), job_id="invoice-42")
    assert (first.id, first.created) == ("invoice-42", True)
    again = capp.tasks["echo"].apply_async((2,), job_id="invoice-42")
    assert (again.id, again.created) == ("invoice-42", False)
    assert capp.job("invoice-42").info().args == [1]
    c = consumer(capp)
    run_until(c, lambda: first.state == JobState.SUCCEEDED)
    stop(c)
    # an id that still exists, finished or not, is never run twice
    assert capp.tasks["echo"].apply_async((3,), job_id="invoice-42").created is False
    first.delete()
    fresh = capp.tasks["echo"].apply_async((4,), job_id="invoice-42")
    assert fresh.created and fresh.info().args == [4]


def test_concurrent_producers_with_one_custom_id_create_one_job(capp, peers):
    producers = [peers() for _ in range(4)]
    barrier = threading.Barrier(len(producers))
    out = []

    def produce(app) -> None:
        barrier.wait(10)
        out.append(app.tasks["noop"].apply_async(job_id="once").created)

    threads = [threading.Thread(target=produce, args=(p,)) for p in producers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(out) == [False, False, False, True]


# ---------------------------------------------------------------- resource locks


def spans(app) -> list[tuple[str, str, float, float]]:
    rows = []
    for raw in app.backend.client.lrange(scratch_key(app, "spans"), 0, -1):
        what, jid, start, end = raw.decode().split()
        rows.append((what, jid, float(start), float(end)))
    return sorted(rows, key=lambda r: r[2])


def assert_one_at_a_time(app) -> None:
    rows = spans(app)
    for prev, nxt in zip(rows, rows[1:]):
        assert nxt[2] >= prev[3], f"{prev[1]} and {nxt[1]} ran at once"
    assert {int(x) for x in app.backend.client.lrange(scratch_key(app, "max"), 0, -1)} <= {1}


def serve(apps, until, timeout=60.0):
    """Run one consumer per app in threads until ``until()``."""
    errors = []
    consumers = [consumer(a, f"w{i}") for i, a in enumerate(apps)]
    done = threading.Event()

    def loop(c) -> None:
        try:
            while not done.is_set():
                c.step()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(c,)) for c in consumers]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: until() or errors, timeout, 0.05, "the jobs to finish")
    finally:
        done.set()
        for t in threads:
            t.join(30)
        for c in consumers:
            stop(c)
    assert not errors


def test_skip_runs_jobs_that_found_the_resource_free_one_at_a_time(capp, peers):
    workers = [peers() for _ in range(3)]
    jobs = []
    for _ in range(5):  # in waves, so that several find the resource free
        wave = [capp.tasks["locked_skip"].delay(0.02) for _ in range(10)]
        jobs += wave
        serve(workers, lambda: all(j.state.finished for j in wave))
    infos = [j.info() for j in jobs]
    ran = {i.id for i in infos if i.state == JobState.SUCCEEDED}
    skipped = [i for i in infos if i.state == JobState.SKIPPED]
    assert len(ran) + len(skipped) == 50
    assert len(ran) >= 5 and skipped
    assert all(i.skipped_by for i in skipped)
    assert {i.skipped_by for i in skipped} <= ran
    assert all(i.attempts == 0 for i in skipped)
    assert {s[1] for s in spans(capp)} == ran
    assert_one_at_a_time(capp)
    stats = capp.backend.task_counters()
    assert int(stats["locked_skip|skipped"]) == len(skipped)
    assert not capp.backend.client.exists(capp.backend.keys.lock("printer"))


def test_wait_runs_every_job_one_at_a_time_without_holding_up_others(capp, peers):
    workers = [peers() for _ in range(3)]
    locked = [capp.tasks["locked_wait"].delay(0.02) for _ in range(50)]
    others = [capp.tasks["stamp"].delay(f"other-{i}") for i in range(20)]
    serve(workers, lambda: all(j.state.finished for j in locked + others))
    infos = [j.info() for j in locked]
    assert {i.state for i in infos} == {JobState.SUCCEEDED}
    assert all(i.attempts == 1 for i in infos)
    assert len(spans(capp)) == 50
    assert_one_at_a_time(capp)
    last_locked = max(i.finished_at for i in infos)
    assert max(j.info().finished_at for j in others) < last_locked
    assert not capp.backend.client.exists(capp.backend.keys.lock("printer"))
    assert not capp.backend.client.exists(capp.backend.keys.lock_waiters("printer"))


def lock_holder(app, resource="printer"):
    raw = app.backend.client.get(app.backend.keys.lock(resource))
    return raw.decode() if raw else None


def waiter(app):
    """A job waiting for the printer (queue ``later``, so tests claim it on purpose)."""
    job = app.tasks["locked_wait"].apply_async(queue="later")
    claim(app, "w-waiter", queues=("later",))
    assert job.state == JobState.WAITING
    return job


@pytest.mark.parametrize("end", ["success", "failure", "timeout"])
def test_lock_is_freed_by_every_outcome_and_handed_to_the_waiter(capp, end):
    task, args = {"success": ("locked_wait", (0,)), "failure": ("locked_fail", ()),
                  "timeout": ("locked_sleep", (5,))}[end]
    job = capp.tasks[task].delay(*args)
    c = consumer(capp)
    run_until(c, lambda: c.held)
    assert lock_holder(capp) == job.id
    w = waiter(capp)
    run_until(c, lambda: job.state.finished)
    stop(c)
    assert job.state == (JobState.SUCCEEDED if end == "success" else JobState.FAILED)
    if end == "timeout":
        assert job.info().errors[-1]["type"] == "TaskTimeout"
    assert lock_holder(capp) is None
    assert w.state == JobState.QUEUED
    assert capp.backend.ready_ids("later", 10) == [w.id]


def test_lock_is_freed_when_a_running_job_is_cancelled(capp):
    job = capp.tasks["wait_cancel"].apply_async(resource="printer")
    c = consumer(capp)
    run_until(c, lambda: c.held)
    assert lock_holder(capp) == job.id
    w = waiter(capp)
    t = threading.Thread(target=run_until, args=(c, lambda: job.state.finished))
    t.start()
    try:
        wait_for(lambda: capp.backend.client.llen(scratch_key(capp, "started")), what="task start")
        assert job.cancel() == "requested"
        c.heartbeat.beat()
    finally:
        t.join(20)
        stop(c)
    assert job.state == JobState.CANCELLED
    assert lock_holder(capp) is None and w.state == JobState.QUEUED


def test_lock_is_freed_when_the_worker_dies(capp):
    job = capp.tasks["locked_wait"].apply_async(max_lost=0)
    claim(capp, "w1")
    assert lock_holder(capp) == job.id
    w = waiter(capp)
    assert reap(capp, "w1") == {job.id: "failed"}  # retry=0, max_lost=0: the worker death ends it
    assert lock_holder(capp) is None and w.state == JobState.QUEUED


@pytest.mark.parametrize("end", ["ok", "cancel", "fail", "release", "reap"])
def test_a_job_requeued_while_it_runs_keeps_its_lock_until_the_attempt_ends(capp, end):
    """Requeuing an active job does not free its resource while the attempt
    still runs in its worker: neither another job of the resource nor a
    second run of this one starts before that attempt ends. Its end (an
    outcome of any kind, discarded, or its worker's reap) frees the lock,
    hands the turn on and queues the job, in one step."""
    job = capp.tasks["locked_wait"].apply_async(max_lost=0)
    token = int(claim(capp, "w1")[0][1])
    w = waiter(capp)
    job.requeue()
    info = job.info()
    assert info.state == JobState.ACTIVE and info.worker == "w1" and info.requeue_requested
    assert lock_holder(capp) == job.id and w.state == JobState.WAITING
    other = capp.tasks["locked_wait"].delay()
    assert claim(capp, "w2", count=5) == []  # no second run of the job; the other job waits
    assert other.state == JobState.WAITING and lock_holder(capp) == job.id
    assert violations(snapshot(capp)) == []
    if end == "reap":
        assert reap(capp, "w1") == {job.id: "requeued"}  # not failed, though max_lost=0
    else:
        blob = error_entry(ValueError("x"), 1) if end in ("fail", "cancel") else b""
        assert settle(capp, "w1", Outcome(job.id, token, end, blob)) == [0]  # its outcome discarded
        assert settle(capp, "w1", Outcome(job.id, token, end, blob)) == [0]  # and a resend of it
    assert lock_holder(capp) is None and w.state == JobState.QUEUED  # the oldest waiter's turn
    info = job.info()
    assert info.state == JobState.QUEUED and not info.requeue_requested and not info.cancel_requested
    assert (info.attempts, info.requeue_count, info.result) == (0, 1, None)
    assert capp.backend.ready_ids("default", 10) == [job.id]
    assert violations(snapshot(capp)) == []


@pytest.mark.parametrize("op", ["cancel", "retract", "delete", "stall"])
def test_a_waiter_handed_the_resource_and_then_removed_passes_its_turn_on(capp, op):
    holder = capp.tasks["locked_wait"].delay()
    token = int(claim(capp, "w1")[0][1])
    first = capp.tasks["locked_wait"].apply_async(queue="later")
    second = capp.tasks["locked_wait"].apply_async(queue="later")
    claim(capp, "w2", count=2, queues=("later",))
    assert first.state == second.state == JobState.WAITING
    settle(capp, "w1", Outcome(holder.id, token, "ok"))
    assert first.state == JobState.QUEUED and second.state == JobState.WAITING  # first's turn
    getattr(first, op)()  # it leaves the queue before it took the lock
    assert second.state == JobState.QUEUED  # not left waiting for a release that never comes
    assert capp.backend.ready_ids("later", 10) == [second.id]
    claim(capp, "w3", queues=("later",))
    assert second.state == JobState.ACTIVE and lock_holder(capp) == second.id


def test_purging_the_queue_of_a_waiter_handed_the_resource_passes_its_turn_on(capp):
    holder = capp.tasks["locked_wait"].delay()
    token = int(claim(capp, "w1")[0][1])
    first = capp.tasks["locked_wait"].apply_async(queue="later")
    claim(capp, "w2", queues=("later",))
    second = capp.tasks["locked_wait"].apply_async(queue="other")
    claim(capp, "w3", queues=("other",))
    assert first.state == second.state == JobState.WAITING
    settle(capp, "w1", Outcome(holder.id, token, "ok"))
    assert first.state == JobState.QUEUED  # first's turn, in queue "later"
    assert capp.control.purge_queue("later") == 1
    assert second.state == JobState.QUEUED  # its turn now, in its own queue
    assert capp.backend.ready_ids("other", 10) == [second.id]
    claim(capp, "w4", queues=("other",))
    assert lock_holder(capp) == second.id


def test_a_late_outcome_does_not_free_a_lock_someone_else_holds(capp):
    job = capp.tasks["locked_wait"].delay()
    token = int(claim(capp, "w1")[0][1])
    assert reap(capp, "w1") == {job.id: "requeued"}  # w1 loses the lease
    token2 = int(claim(capp, "w2")[0][1])
    assert lock_holder(capp) == job.id
    assert settle(capp, "w1", Outcome(job.id, token, "ok")) == [0]
    assert lock_holder(capp) == job.id and job.state == JobState.ACTIVE
    assert settle(capp, "w2", Outcome(job.id, token2, "ok")) == [1]
    assert lock_holder(capp) is None


def test_resource_from_a_function_of_the_arguments(capp):
    @capp.task(name="invoice", resource=lambda invoice_id, **_: f"invoice:{invoice_id}")
    def invoice(invoice_id: int, note: str = "") -> None:
        return None

    a, b, c = invoice.delay(1), invoice.delay(2, note="x"), invoice.apply_async((3,), resource="custom")
    assert [j.info().resource for j in (a, b, c)] == ["invoice:1", "invoice:2", "custom"]
    claim(capp, "w1", count=3)
    assert [lock_holder(capp, r) for r in ("invoice:1", "invoice:2", "custom")] == [a.id, b.id, c.id]


# ---------------------------------------------------------------- priorities


@pytest.fixture
def mixed(capp):
    """Jobs of several levels, enqueued interleaved; returns the expected claim order."""
    stamp = capp.tasks["stamp"]
    levels = ["low", "normal", "high", 5, -3, "normal", "high", "low", 5, -3, "normal", "high"]
    value = {"low": -10, "normal": 0, "high": 10}
    jobs = [(stamp.apply_async((f"p{lvl}-{i}",), priority=lvl), value.get(lvl, lvl), i)
            for i, lvl in enumerate(levels)]
    front = stamp.apply_async(("front",), front=True)  # normal, at the head of its level
    expected = sorted(jobs, key=lambda t: (-t[1], t[2]))
    order = [j.id for j, _, _ in expected]
    first_normal = next(k for k, (_, p, _) in enumerate(expected) if p == 0)
    order.insert(first_normal, front.id)
    return order


def test_claims_follow_priority_then_fifo_with_front_first(capp, mixed):
    got = [row[0].decode() for row in claim(capp, "w1", count=100)]
    assert got == mixed


def test_a_consumer_runs_jobs_in_priority_order(capp, mixed):
    c = consumer(capp)
    run_until(c, lambda: capp.backend.client.llen(scratch_key(capp, "order")) == len(mixed))
    stop(c)
    ran = [x.decode() for x in capp.backend.client.lrange(scratch_key(capp, "order"), 0, -1)]
    tags = {j: capp.job(j).info().args[0] for j in mixed}
    assert ran == [tags[j] for j in mixed]


def test_a_consumer_serving_some_tasks_takes_them_in_priority_order(capp, mixed):
    capp.tasks["noop"].apply_async(priority="high")  # not served: stays
    c = consumer(capp, tasks=("stamp",))
    run_until(c, lambda: capp.backend.client.llen(scratch_key(capp, "order")) == len(mixed))
    stop(c)
    ran = [x.decode() for x in capp.backend.client.lrange(scratch_key(capp, "order"), 0, -1)]
    assert ran == [capp.job(j).info().args[0] for j in mixed]
    assert len(capp.backend.ready_ids("default", 10)) == 1


def test_priority_order_holds_with_several_claimers(capp, mixed, peers):
    """Claims race from three workers; each claim is numbered in the same
    transaction, so the global order of claims can be read back."""
    extra = [capp.tasks["stamp"].apply_async((f"bulk-{i}",), priority=i % 7 - 3).id for i in range(300)]
    prio = {jid: int(h["p"]) for jid, h in zip(mixed + extra, capp.backend.job_hashes(mixed + extra))}
    expected = sorted(mixed + extra, key=lambda j: -prio[j])  # stable: FIFO inside a level
    seq_key = scratch_key(capp, "seq")
    sha = capp.backend.client.script_load(capp.backend.scripts["settle_claim"].source)
    claims: list[tuple[int, list[str]]] = []
    lock = threading.Lock()

    def claimer(app, wid) -> None:
        b = app.backend
        args = b.settle_claim_args(wid, 3, (), ["default"], [], caps(app))
        while True:
            pipe = b.client.pipeline(transaction=True)
            pipe.incr(seq_key)
            pipe.execute_command("EVALSHA", sha, 1, b.prefix, *args)
            seq, reply = pipe.execute()
            ids = [row[0].decode() for row in b.parse_settle_claim(reply)[1]]
            if not ids:
                return
            with lock:
                claims.append((seq, ids))

    threads = [threading.Thread(target=claimer, args=(peers(), f"w{i}")) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    order = [jid for _, ids in sorted(claims) for jid in ids]
    assert order == expected
    assert {len(ids) for _, ids in sorted(claims)[:-1]} == {3}  # full batches until the end


@pytest.mark.parametrize("op", ["stall", "requeue"])
def test_a_failed_job_brought_back_takes_its_unique_key_again(capp, op):
    job = capp.tasks["fail"].apply_async(unique_key="again")
    c = consumer(capp)
    run_until(c, lambda: job.state.finished)
    stop(c)
    assert not capp.backend.client.exists(capp.backend.keys.unique("again"))
    getattr(job, op)()
    assert capp.backend.client.get(capp.backend.keys.unique("again")) == job.id.encode()
    dup = capp.tasks["fail"].apply_async(unique_key="again")
    assert (dup.id, dup.created) == (job.id, False)
