"""The asyncio producer API against a real server and a real worker process:
the same semantics and errors as the sync calls."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from taskq import InvalidJobState, JobNotFound, JobState, PayloadTooLarge, ResultTimeout, TaskFailed, TaskQ
from taskq.ephemeral import EphemeralServer
from tests.apps.basic import build


@pytest.fixture
def bapp(redis_url: str, namespace: str) -> Iterator[TaskQ]:
    """An app with the tasks of ``tests/apps/basic.py`` (the worker's)."""
    app = build(redis_url, namespace)
    yield app
    app.backend.delete_namespace()
    app.close()


def commandstat(url: str, name: str) -> int:
    with redis.Redis.from_url(url) as r:
        return int(r.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))


def test_adelay_and_aresult_round_trip_through_a_worker(bapp, start_worker):
    start_worker()

    async def main() -> tuple[Any, ...]:
        job = await bapp.tasks["add"].adelay(2, 3)
        assert job.created and job.task_name == "add"
        value = await job.aresult(timeout=20)
        info = await job.ainfo()
        state = await job.astate()
        await bapp.aclose()
        return value, info.args, state

    assert asyncio.run(main()) == (5, [2, 3], JobState.SUCCEEDED)


def test_many_tasks_of_one_loop_enqueue_and_wait_at_once(bapp, start_worker):
    start_worker("tests.apps.basic:app", "-c", "4")
    add = bapp.tasks["add"]

    async def one(i: int) -> int:
        job = await add.adelay(i, i)
        return await job.aresult(timeout=60)  # type: ignore[no-any-return]

    async def main() -> list[int]:
        try:
            return await asyncio.gather(*[one(i) for i in range(200)])
        finally:
            await bapp.aclose()

    assert asyncio.run(main()) == [2 * i for i in range(200)]


def test_a_result_wait_blocks_on_the_server_and_never_polls(bapp, start_worker, redis_url):
    start_worker()

    async def main() -> Any:
        job = await bapp.tasks["sleep"].adelay(1.5, "done")
        before = commandstat(redis_url, "blmove")
        value = await job.aresult(timeout=20)
        return value, commandstat(redis_url, "blmove") - before

    value, waits = asyncio.run(main())
    assert value == "done"
    assert waits == 1  # one BLMOVE held by the server until the outcome was pushed


def test_failures_timeouts_and_missing_jobs_raise_the_sync_errors(bapp, start_worker):
    async def before_worker() -> None:
        queued = await bapp.tasks["add"].adelay(1, 1)
        with pytest.raises(ResultTimeout):
            await queued.aresult(timeout=0.2)
        assert await queued.acancel() == "cancelled"
        with pytest.raises(InvalidJobState):
            await queued.acancel()
        with pytest.raises(TaskFailed) as failed:
            await queued.aresult()
        assert failed.value.state == "cancelled"
        with pytest.raises(JobNotFound):
            await bapp.job("no-such-job").aresult(timeout=1)
        with pytest.raises(JobNotFound):
            await bapp.job("no-such-job").astate()
        with pytest.raises(JobNotFound):
            await bapp.job("no-such-job").acancel()
        with pytest.raises(PayloadTooLarge):
            await bapp.tasks["add"].adelay("x" * 600_000, 1)
        with pytest.raises(TypeError, match="positional argument 0"):
            await bapp.tasks["add"].adelay(object(), 1)
        await bapp.aclose()

    asyncio.run(before_worker())
    start_worker()

    async def with_worker() -> None:
        job = await bapp.tasks["fail"].adelay("boom")
        with pytest.raises(TaskFailed) as failed:
            await job.aresult(timeout=20)
        assert failed.value.exc_type == "ValueError" and failed.value.message == "boom"
        await bapp.aclose()

    asyncio.run(with_worker())


def test_aapply_async_options_and_unique_keys_behave_as_apply_async(bapp):
    async def main() -> None:
        add = bapp.tasks["add"]
        first = await add.aapply_async((1, 2), queue="other", priority="high", delay=60, unique_key="u1")
        again = await add.aapply_async((1, 2), unique_key="u1")
        assert first.created and not again.created and again.id == first.id
        info = await first.ainfo()
        assert (info.queue, info.priority, info.state) == ("other", 10, JobState.SCHEDULED)
        named = await bapp.aenqueue("add", 4, b=5)
        assert (await named.ainfo()).kwargs == {"b": 5}
        same = await add.aapply_async((1, 1), job_id="fixed-id")
        twice = await add.aapply_async((1, 1), job_id="fixed-id")
        assert same.id == twice.id == "fixed-id" and same.created and not twice.created
        await bapp.aclose()

    asyncio.run(main())


def test_amap_enqueues_in_chunks_in_order_and_reports_what_went_in_before_an_error(bapp):
    async def main() -> None:
        add = bapp.tasks["add"]
        jobs = await add.amap([(i, i) for i in range(2500)])
        assert bapp.backend.ready_ids("default", 3000) == [j.id for j in jobs]
        with pytest.raises(TypeError) as bad:
            await add.amap([(1, 1)] * 1500 + [(object(), 1)])
        assert len(bad.value.enqueued) == 1000  # type: ignore[attr-defined]  # the first chunk went in
        await bapp.aclose()

    asyncio.run(main())


def test_an_enqueue_while_the_server_is_down_is_retried_and_creates_the_job_once(own_server: EphemeralServer):
    app = build(own_server.url, "down", enqueue_retry_timeout=20)
    add = app.tasks["add"]

    async def main() -> Any:
        await add.adelay(0, 0)  # connected, code loaded
        own_server.kill()
        pending = asyncio.ensure_future(add.adelay(1, 2))
        await asyncio.sleep(0)  # it sends, fails and retries while the server comes back
        await asyncio.to_thread(own_server.start)
        job = await pending
        return job, await job.astate()

    try:
        job, state = asyncio.run(main())
        assert job.created and state == JobState.QUEUED
        assert app.backend.ready_ids("default", 10).count(job.id) == 1
    finally:
        app.close()


def test_one_app_serves_several_loops_and_threads(bapp):
    add = bapp.tasks["add"]

    async def enqueue(n: int) -> list[str]:
        ids = [(await add.adelay(i, 0)).id for i in range(n)]
        await bapp.aclose()
        return ids

    first = asyncio.run(enqueue(5))
    second = asyncio.run(enqueue(5))  # a new loop: a new pool, not the closed loop's connections
    out: list[list[str]] = []
    threads = [threading.Thread(target=lambda: out.append(asyncio.run(enqueue(20)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(out) == 4 and len({i for ids in out for i in ids} | set(first) | set(second)) == 90


def blocked_waits(url: str) -> int:
    """How many clients the server holds in a BLMOVE."""
    with redis.Redis.from_url(url) as r:
        return sum(1 for c in r.client_list() if c.get("cmd") == "blmove")


def test_a_cancelled_wait_leaves_no_reply_behind_for_the_next_command(bapp, start_worker, redis_url):
    start_worker()

    async def main() -> Any:
        job = await bapp.tasks["sleep"].adelay(1.0, "late")
        waiting = asyncio.ensure_future(job.aresult(timeout=30))
        for _ in range(500):  # until the server holds it
            if blocked_waits(redis_url):
                break
            await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        states = await asyncio.gather(*[job.astate() for _ in range(50)])
        value = await job.aresult(timeout=20)  # the same loop's pools, after the cancel
        await bapp.aclose()
        return set(states) <= {JobState.ACTIVE, JobState.QUEUED, JobState.SUCCEEDED}, value

    assert asyncio.run(main()) == (True, "late")


def test_job_control_awaited_moves_the_job_as_the_sync_calls(bapp, start_worker):
    """Each awaited control call runs its script: a scheduled job stalled and
    unstalled goes back to the schedule, requeued to the front runs, a
    finished one is deleted, a waiting one is retracted."""
    add = bapp.tasks["add"]

    async def main() -> None:
        later = await add.aapply_async((1, 2), countdown=3600)
        await later.astall()
        assert await later.astate() == JobState.STALLED
        await later.aunstall()
        assert await later.astate() == JobState.SCHEDULED  # its due time is an hour ahead
        await later.aretract()
        with pytest.raises(JobNotFound):
            await later.astate()
        with pytest.raises(JobNotFound):
            await later.aretract()

        queued = await add.adelay(2, 2)
        await queued.astall()
        await queued.arequeue(front=True)  # a stalled job requeued runs again
        assert await queued.astate() == JobState.QUEUED
        start_worker()
        assert await queued.await_(timeout=20) == JobState.SUCCEEDED
        assert await queued.aget(timeout=1) == 4
        await queued.adelete()
        with pytest.raises(JobNotFound):
            await queued.ainfo()
        await bapp.aclose()

    asyncio.run(main())
