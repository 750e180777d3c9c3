from __future__ import annotations

import os

from taskq.enqueue import new_job_id


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
