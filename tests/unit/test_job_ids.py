from __future__ import annotations

import os

from taskq.enqueue import _JobIds, new_job_id


def test_job_ids_are_unique_and_never_look_like_options():
    ids = [new_job_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert not any(i.startswith("-") for i in ids)


def test_a_forked_child_draws_its_own_prefix():
    parent = new_job_id()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(w, new_job_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(r, 100).decode()
    assert child[:12] != parent[:12]


def test_a_process_makes_ids_in_sorting_order():
    """Equal due times are ordered by id in the schedule: "…f" sorted after
    "…10", so a delayed map() of 17 jobs or more ran out of order."""
    make = _JobIds()  # a fresh counter: through ids of 1 to 5 hex digits
    ids = [make() for _ in range(70_000)]
    assert sorted(ids) == ids
    assert new_job_id() < new_job_id()
