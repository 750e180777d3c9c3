"""Random interleavings of every state change, driven through the scripts
directly (no processes, a fixed seed): enqueues with custom and reused ids,
unique keys, resources, priorities and delays; claims and outcomes of
several workers (stale tokens too); reaps, orphan releases, promotes;
cancel, stall, unstall, requeue, retract, delete, purge; expiry and trims.
After every step the invariants hold (tests/storage/invariants.py) and no
job is gone that no step removed."""

from __future__ import annotations

import random

import pytest

from taskq.enqueue import build_job
from taskq.errors import TaskQError
from taskq.worker.outcome import Outcome, error_entry
from tests.apps.control import build
from tests.storage.invariants import FINISHED_IN, LIVE, jobs_of, snapshot, violations

WORKERS = ("w0", "w1", "w2")
QUEUES = ["qa", "qb"]
CAPS = (12, 12, 5, 600_000)  # failed cap, done cap, error history, ttl_ms: small caps, trims happen
FAR = 10**15  # a now_ms after every due time


@pytest.fixture
def fapp(redis_url, namespace):
    app = build(redis_url, namespace, failed_max=12, done_max=12, succeeded_ttl=600, failed_ttl=600)
    app.backend.register_tasks({"noop": 2})
    yield app
    app.backend.delete_namespace()
    app.close()


class Fuzz:
    def __init__(self, app, seed: int) -> None:
        self.app, self.b, self.rng = app, app.backend, random.Random(seed)
        self.held: dict[str, dict[str, int]] = {w: {} for w in WORKERS}
        self.fresh = 0

    def pick(self, snap, states=None):
        ids = sorted(j for j, h in jobs_of(snap).items() if states is None or h.get("s") in states)
        return self.rng.choice(ids) if ids else None

    def step(self, snap) -> tuple[str, set[str]]:
        """One random operation; returns its name and the ids it may remove."""
        rng, b, c = self.rng, self.b, self.app.control
        op = rng.choices(["enqueue", "claim", "settle", "reap", "orphans", "promote", "control", "expire", "trim"],
                         [8, 6, 6, 1, 1, 2, 7, 3, 0.3])[0]
        if op == "enqueue":
            call: dict = {"queue": rng.choice(QUEUES), "priority": rng.choice([-5, 0, 5])}
            where: dict = {"front": rng.random() < 0.1}
            reused = rng.random() < 0.4
            # ids of our own, so that the run depends on the seed alone; a fresh
            # one is sent as generated ids are (a plain job: MULTI, not the script)
            where["job_id"] = f"c{rng.randrange(12)}" if reused else f"f{self.fresh}"
            if rng.random() < 0.3:
                where["unique_key"] = f"u{rng.randrange(4)}"
            if rng.random() < 0.4:
                where["resource"] = f"r{rng.randrange(2)}"
                call["on_locked"] = rng.choice(["wait", "wait", "skip"])
            if rng.random() < 0.2:
                call["delay"] = 5
            options = self.app.options_for("noop").merged(call)
            b.enqueue([build_job(self.app.settings, "noop", (self.fresh,), {}, options, call, **where)],
                      fresh=not reused)
            self.fresh += 1
        elif op == "claim":
            w = rng.choice(WORKERS)
            b.heartbeat(w, 600_000)
            tasks = ["noop"] if rng.random() < 0.2 else []
            _, rows = b.settle_claim(w, rng.randrange(1, 4), [], rng.sample(QUEUES, 2), tasks, CAPS)
            for r in rows:
                self.held[w][r[0].decode()] = int(r[1])
        elif op == "settle":
            w = rng.choice(WORKERS)
            ids = sorted(self.held[w])
            outs = []
            for jid in rng.sample(ids, min(len(ids), rng.randrange(1, 4))):
                token = self.held[w].pop(jid)
                if rng.random() < 0.1:
                    token -= 1  # a stale outcome: fenced
                kind = rng.choice(["ok", "ok", "fail", "retry", "requeue", "release", "cancel"])
                blob = error_entry(ValueError("x"), 1) if kind in ("fail", "retry", "cancel") else b""
                due = rng.choice([0, 0, 1000]) if kind in ("retry", "requeue") else 0
                outs.append(Outcome(jid, token, kind, blob, delay_ms=due, ttl_ms=600_000).fields())
            b.heartbeat(w, 600_000)
            _, rows = b.settle_claim(w, rng.randrange(0, 3), outs, QUEUES, [], CAPS)
            for r in rows:
                self.held[w][r[0].decode()] = int(r[1])
        elif op == "reap":
            w = rng.choice(WORKERS)
            running = rng.choice(sorted(self.held[w]) + [""])
            kind = rng.choice(["lost", "shutdown", "timeout"])
            b.reap_worker(w, expected_hb=None, caps=CAPS[:2] + (600_000,), lost_blob=error_entry(None, 0, kind="lost"),
                          running=running, running_kind=kind, running_due_ms=rng.choice([-1, 0, 1000]))
            self.held[w].clear()
        elif op == "orphans":
            w = rng.choice(WORKERS)
            known = [j for j in sorted(self.held[w]) if rng.random() < 0.5]
            b.release_orphans(w, known)
            self.held[w] = {j: t for j, t in self.held[w].items() if j in known}
        elif op == "promote":
            b.promote(now_ms=FAR)
        elif op == "expire":  # a finished job's hash expires (its index entry stays until a trim)
            jid = self.pick(snap, FINISHED_IN)
            if jid:
                b.client.delete(b.keys.job(jid))
                return op, {jid}
        elif op == "trim":
            b.trim_finished(1, 1)
        else:
            what = rng.choice(["cancel", "force", "stall", "unstall", "requeue", "front", "retract", "delete",
                               "purge"])
            if what == "purge":
                queue = rng.choice(QUEUES)
                doomed = {j for j, h in jobs_of(snap).items() if h.get("q") == queue
                          and (h.get("s") == "queued" or h.get("s") == "waiting" and h.get("pk"))}
                b.purge_queue(queue, 3)
                return "purge", doomed
            jid = self.pick(snap, LIVE if rng.random() < 0.7 else None)
            if jid is None:
                return op, set()
            try:
                {"cancel": lambda: c.cancel(jid), "force": lambda: c.cancel(jid, force=True),
                 "stall": lambda: c.stall(jid), "unstall": lambda: c.unstall(jid),
                 "requeue": lambda: c.requeue(jid), "front": lambda: c.requeue(jid, front=True),
                 "retract": lambda: c.retract(jid), "delete": lambda: c.delete(jid)}[what]()
            except TaskQError:
                pass
            return f"{what} {jid}", {jid} if what in ("retract", "delete") else set()
        return op, set()


def gone_wrongly(before, after, removable: set[str]) -> list[str]:
    """Jobs that vanished in one step though the step did not remove them: a
    finished job may go only with its own index's cap trim (out of its index)."""
    out = []
    jb, ja = jobs_of(before), jobs_of(after)
    for jid, h in jb.items():
        if jid in ja or jid in removable:
            continue
        index = FINISHED_IN.get(h.get("s"))
        if index is None or jid in after.get(index, ()):
            out.append(f"job {jid} ({h.get('s')}) vanished")
    return out


@pytest.mark.parametrize("seed", range(4))
def test_random_interleavings_keep_the_state_invariants(fapp, seed):
    fuzz = Fuzz(fapp, seed)
    snap = snapshot(fapp)
    log: list[str] = []
    for n in range(600):
        op, removable = fuzz.step(snap)
        log.append(op)
        after = snapshot(fapp)
        bad = violations(after) + gone_wrongly(snap, after, removable)
        assert not bad, f"step {n} ({op}); the last steps: {log[-8:]}\n" + "\n".join(bad)
        snap = after
    # the workers settle what they hold (and hand back what a fenced, stale
    # outcome left them holding unknowingly), everything due is promoted and
    # claimed: nothing is left behind
    for w in WORKERS:
        fapp.backend.release_orphans(w, sorted(fuzz.held[w]))
    for _ in range(200):
        moved, _, _ = fapp.backend.promote(now_ms=FAR)
        for w in WORKERS:
            outs = [Outcome(j, t, "ok", ttl_ms=600_000).fields() for j, t in fuzz.held[w].items()]
            fapp.backend.heartbeat(w, 600_000)
            _, rows = fapp.backend.settle_claim(w, 5, outs, QUEUES, [], CAPS)
            fuzz.held[w] = {r[0].decode(): int(r[1]) for r in rows}
        if not moved and not any(fuzz.held.values()):
            break
    final = snapshot(fapp)
    bad = violations(final, idle=True)
    shown = [f"{k}: {v}" for k, v in sorted(final.items()) if not k.startswith(("j:", "w:")) or k[2:] in str(bad)]
    assert not bad, "\n".join([*bad, *shown, *log[-10:]])
