"""Chains, groups and chords run by an in-process consumer."""

from __future__ import annotations

import datetime as dt
import decimal
import time
from collections.abc import Callable
from typing import Any

import pytest

from taskq import InvalidJobState, JobState, TaskFailed, TaskQ, chain, chord, group
from taskq.canvas import Signature
from taskq.codec import dumps, loads
from tests.conftest import drain
from tests.workflows import flowapp


@pytest.fixture
def fapp(redis_url: str, namespace: str) -> Any:
    app = flowapp.build(redis_url, namespace)
    yield app
    app.backend.delete_namespace()
    app.close()


def run(app: TaskQ, handle: Any) -> None:
    drain(app, [handle])
    assert handle.state.finished


def test_chain_passes_each_value_to_the_next_step(fapp: TaskQ) -> None:
    add = fapp.tasks["add"]
    w = (add.s(1, 2) | add.s(10) | add.s(100)).delay()
    assert w.state == JobState.WAITING
    run(fapp, w)
    assert w.result(timeout=1) == 113
    assert chain(add.s(1, 1), add.s(1)).delay().id != w.id


def test_immutable_signature_ignores_the_previous_value(fapp: TaskQ) -> None:
    add, echo = fapp.tasks["add"], fapp.tasks["echo"]
    w = (add.s(1, 2) | echo.si("own", k=1)).delay()
    run(fapp, w)
    assert w.result(timeout=1) == [["own"], {"k": 1}]


def test_group_value_is_the_members_values_in_member_order(fapp: TaskQ) -> None:
    member = fapp.tasks["member"]
    g = group(member.s(i) for i in range(30)).delay()
    run(fapp, g)
    assert g.result(timeout=1) == [i * 3 for i in range(30)]
    outcomes = fapp.job(g.id).results(timeout=1)
    assert [o.value for o in outcomes] == [i * 3 for i in range(30)] and all(o.ok for o in outcomes)


def test_chord_callback_runs_once_with_values_in_member_order(fapp: TaskQ, tmp_path: Any) -> None:
    member, collect = fapp.tasks["member"], fapp.tasks["collect"]
    trace = tmp_path / "trace"
    c = (group(member.s(i) for i in range(50)) | collect.s("x", trace=str(trace))).delay()
    run(fapp, c)
    assert c.result(timeout=1) == [[i * 3 for i in range(50)], "x"]
    assert len(trace.read_text().splitlines()) == 1
    same = chord([member.s(1), member.s(2)], collect.s()).delay()
    run(fapp, same)
    assert same.result(timeout=1) == [[3, 6]]


def test_values_keep_their_msgpack_types_through_a_chain(fapp: TaskQ) -> None:
    echo = fapp.tasks["echo"]
    when = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    w = (echo.s(when, b"\x00\xff", 2**63 - 1, decimal.Decimal("1.5")) | echo.s(tail=True)).delay()
    run(fapp, w)
    assert w.result(timeout=1) == [[[[when, b"\x00\xff", 2**63 - 1, decimal.Decimal("1.5")], {}]], {"tail": True}]


def test_a_chain_stops_at_a_step_that_fails_and_names_it(fapp: TaskQ) -> None:
    add, boom = fapp.tasks["add"], fapp.tasks["boom"]
    w = (add.s(1, 1) | boom.s() | add.s(3) | add.s(4)).delay()
    run(fapp, w)
    steps = fapp.job(w.id).members()
    with pytest.raises(TaskFailed) as err:
        w.result(timeout=1)
    failed = steps[1]
    assert err.value.job_id == failed and "nope" in str(err.value) and err.value.workflow == w.id  # type: ignore[attr-defined]
    assert [fapp.job(s).state for s in steps] == ["succeeded", "failed", "cancelled", "cancelled"]
    info = fapp.job(steps[3]).info()
    assert info.cause == failed and failed in info.errors[-1]["message"]


def test_a_failed_member_cancels_the_chord_callback(fapp: TaskQ) -> None:
    member, boom, collect = fapp.tasks["member"], fapp.tasks["boom"], fapp.tasks["collect"]
    c = chord([member.s(1), boom.s(), member.s(2)], collect.s()).delay()
    run(fapp, c)
    with pytest.raises(TaskFailed):
        c.result(timeout=1)
    callback = fapp.job(c.id).info().dependencies or [m for m in fapp.job(c.id).members()
                                                       if fapp.job(m).info().task == "collect"]
    assert fapp.job(callback[0]).state == JobState.CANCELLED
    outcomes = {o.state for o in fapp.job(c.id).results(timeout=1)}
    assert outcomes == {"cancelled"}


def test_group_results_give_each_members_outcome(fapp: TaskQ) -> None:
    member, boom = fapp.tasks["member"], fapp.tasks["boom"]
    g = group(member.s(1), boom.s(), member.s(2)).delay()
    run(fapp, g)
    with pytest.raises(TaskFailed):
        g.result(timeout=1)
    out = g.results(timeout=1)
    assert [o.state for o in out] == ["succeeded", "failed", "succeeded"]
    assert out[0].value == 3 and out[1].error and out[1].error["type"] == "ValueError"


def test_link_error_runs_once_with_the_failed_step(fapp: TaskQ) -> None:
    add, boom, echo = fapp.tasks["add"], fapp.tasks["boom"], fapp.tasks["echo"]
    w = (add.s(1, 1) | boom.s()).apply_async(link_error=echo.s("handler"))
    failed = fapp.job(w.id).members()[1]
    errback = fapp.job(w.id).info().parents[0]
    drain(fapp, [fapp.job(errback)])
    assert fapp.job(errback).state == JobState.SUCCEEDED
    ok = add.s(1, 1).apply_async(link_error=echo.s("handler")) if False else (add.s(1, 1) | add.s(1)).apply_async(
        link_error=echo.s("handler"))
    run(fapp, ok)
    errback_ok = fapp.job(ok.id).info().parents[0]
    assert fapp.job(errback_ok).state == JobState.SKIPPED
    assert fapp.job(errback).info().args[0] == failed


def test_cancel_cancels_every_member_not_yet_finished(fapp: TaskQ) -> None:
    member, collect = fapp.tasks["member"], fapp.tasks["collect"]
    c = chord([member.s(i) for i in range(20)], collect.s()).delay()
    assert c.cancel() == "cancelled"
    assert c.wait(timeout=1) == JobState.CANCELLED
    assert {fapp.job(m).state for m in fapp.job(c.id).members()} == {JobState.CANCELLED}
    assert fapp.backend.ready_length("default") == 0 if hasattr(fapp.backend, "ready_length") else True


def test_a_handle_and_a_step_waiting_for_its_dependencies_are_not_requeued_or_stalled(fapp: TaskQ) -> None:
    add, member, boom = fapp.tasks["add"], fapp.tasks["member"], fapp.tasks["boom"]
    w = (add.s(1, 2) | add.s(10)).delay()
    waiting = [m for m in w.members() if fapp.job(m).state == JobState.WAITING]
    assert len(waiting) == 1
    with pytest.raises(InvalidJobState, match="waiting for its dependencies"):
        fapp.job(waiting[0]).requeue()
    with pytest.raises(InvalidJobState, match="a workflow handle"):
        w.requeue()
    run(fapp, w)
    assert w.result(timeout=1) == 13
    g = group(member.s(1), boom.s()).delay()
    run(fapp, g)
    assert g.state == JobState.FAILED
    with pytest.raises(InvalidJobState, match="a workflow handle"):
        g.stall()
    assert fapp.control.requeue_failed() == 1  # the failed member, not the handle
    assert g.state == JobState.FAILED and len(fapp.control.failed_jobs()) == 1


def test_a_member_that_finishes_again_counts_once(fapp: TaskQ) -> None:
    member, boom = fapp.tasks["member"], fapp.tasks["boom"]
    g = group(member.s(1), boom.s()).delay()
    run(fapp, g)
    assert g.wait(timeout=1) == JobState.FAILED
    failed = g.results(timeout=1)[1].id
    fapp.job(failed).requeue()  # runs (and fails) again: the group's outcome stands
    drain(fapp, [fapp.job(failed)])
    assert g.state == JobState.FAILED and [o.state for o in g.results(timeout=1)] == ["succeeded", "failed"]


def test_signature_is_plain_data(fapp: TaskQ) -> None:
    sig = fapp.signature("add", args=(1, 2), queue="default", priority=3)
    again = Signature.from_dict(fapp, loads(dumps(sig.to_dict())))
    assert again == sig and again.options == {"queue": "default", "priority": 3}
    assert fapp.tasks["add"].s(1).set(retry=2).options == {"retry": 2}
    w = (sig | fapp.signature("add", args=(5,))).delay()
    run(fapp, w)
    assert w.result(timeout=1) == 8


def test_signed_steps_verify_with_the_value_put_in_front(make_app: Callable[..., TaskQ], namespace: str,
                                                          redis_url: str) -> None:
    app = flowapp.build(redis_url, namespace, secret_key="k" * 32)
    try:
        add = app.tasks["add"]
        w = (add.s(1, 2) | add.s(3)).delay()
        run(app, w)
        assert w.result(timeout=1) == 6
    finally:
        app.backend.delete_namespace()
        app.close()


def test_big_group_is_enqueued_in_at_most_20_calls(fapp: TaskQ) -> None:
    member, collect = fapp.tasks["member"], fapp.tasks["collect"]

    def calls() -> int:
        stats = fapp.backend.client.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_fcall", "cmdstat_evalsha"))

    before = calls()
    c = chord([member.s(i) for i in range(10_000)], collect.s()).delay()
    assert calls() - before <= 20
    assert len(fapp.job(c.id).members()) == 10_001


def test_a_waiting_step_keeps_its_own_delay_and_eta_from_its_release(fapp: TaskQ) -> None:
    add = fapp.tasks["add"]
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    w = (add.s(1, 2).set(job_id="first") | add.s(10).set(job_id="delayed", delay=3600)
         | add.s(100).set(job_id="at-eta", eta=eta)).delay()
    assert fapp.job("delayed").state == JobState.WAITING
    drain(fapp, [fapp.job("first")])
    delayed = fapp.job("delayed").info()
    assert delayed.state == JobState.SCHEDULED  # released, then scheduled for its own delay
    now = fapp.backend.server_time_ms() / 1000
    assert delayed.due_at is not None and now + 3590 < delayed.due_at <= now + 3600
    fapp.backend.promote(100, now_ms=int((now + 3601) * 1000))
    drain(fapp, [fapp.job("delayed")])
    at_eta = fapp.job("at-eta").info()
    assert at_eta.state == JobState.SCHEDULED
    assert at_eta.due_at is not None and abs(at_eta.due_at - eta.timestamp()) < 0.01
    fapp.backend.promote(100, now_ms=int((eta.timestamp() + 1) * 1000))
    run(fapp, w)
    assert w.result(timeout=1) == 113


def test_a_waiting_step_with_expires_keeps_its_flow_limits_and_its_expiry(fapp: TaskQ) -> None:
    add = fapp.tasks["add"]
    # a limit of one start per minute: the second limited step is held back
    limited = {"rate_limit": (1, 60.0), "rate_limit_key": "one", "expires": 3600}
    w1 = (add.s(1, 1).set(job_id="a1") | add.s(1).set(job_id="a2", **limited)).delay()
    w2 = (add.s(2, 2).set(job_id="b1") | add.s(2).set(job_id="b2", **limited)).delay()
    drain(fapp, [fapp.job("a1"), fapp.job("b1"), fapp.job("a2")])
    states = sorted([fapp.job("a2").state, fapp.job("b2").state])
    assert states == [JobState.SUCCEEDED, JobState.WAITING]  # one ran, the other is held by the limit
    assert fapp.backend.held_counts(["default"]) == {"default": 1}
    assert not w1.state.finished or not w2.state.finished
    # a step whose expiry passes while it waits for its parent ends expired, never run
    w3 = (add.s(3, 3).set(job_id="c1") | add.s(3).set(job_id="c2", expires=0.2)).delay()
    b = fapp.backend
    exp = int(b.client.zscore(b.keys.expiring("default"), "c2") or 0)
    assert exp > 0  # indexed by its expiry from the enqueue
    deadline = time.monotonic() + 10
    while b.server_time_ms() <= exp:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    b.flow_pass("default", 60_000, fapp.settings.done_max)
    assert fapp.job("c2").state == JobState.EXPIRED
    drain(fapp, [fapp.job("c1")])
    assert fapp.job("c2").state == JobState.EXPIRED
    assert w3.state.finished


def test_a_cancelled_waiting_step_leaves_no_values_behind(fapp: TaskQ) -> None:
    add, collect = fapp.tasks["add"], fapp.tasks["collect"]
    chord(group(add.s(1, 1).set(job_id="m1"), add.s(2, 2).set(job_id="m2", queue="elsewhere")),
          collect.s().set(job_id="cb")).delay()
    drain(fapp, [fapp.job("m1")])
    b = fapp.backend
    assert b.client.exists(b.keys.dependency_values("cb")) == 1  # m1's value waits for m2
    assert fapp.job("cb").cancel() == "cancelled"
    assert b.client.exists(b.keys.dependency_values("cb")) == 0
    assert b.client.exists(b.keys.pending_dependencies("cb")) == 0
