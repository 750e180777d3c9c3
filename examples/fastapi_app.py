"""A FastAPI app that enqueues jobs, awaits their results and streams their
progress, without blocking its event loop (see docs/fastapi.md).

    taskq worker demo_tasks:app                       # in examples/, another terminal
    uvicorn fastapi_app:api --port 8000               # in examples/
    curl -X POST 'http://127.0.0.1:8000/add?a=2&b=3'  -> {"job": "..."}
    curl 'http://127.0.0.1:8000/jobs/<id>'            -> {"job": "...", "state": "succeeded", "result": 5}
    curl -X POST 'http://127.0.0.1:8000/walk?steps=5' -> {"job": "..."}
    curl -N 'http://127.0.0.1:8000/jobs/<id>/progress' -> server-sent events, one per step, then "done"
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from demo_tasks import add, app, walk
from fastapi import FastAPI, HTTPException
from fastapi.responses import StreamingResponse

from taskq import JobNotFound, ResultTimeout, TaskFailed


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await app.aclose()  # this loop's connections


api = FastAPI(lifespan=lifespan)


@api.post("/add")
async def submit_add(a: int, b: int) -> dict[str, str]:
    job = await add.adelay(a, b)
    return {"job": job.id}


@api.post("/walk")
async def submit_walk(steps: int = 5, pause: float = 0.1) -> dict[str, str]:
    job = await walk.adelay(steps, pause)
    return {"job": job.id}


@api.get("/jobs/{job_id}")
async def job_result(job_id: str, wait: float = 10.0) -> dict[str, Any]:
    """The job's result, waiting up to ``wait`` seconds for it (the wait
    blocks on the server, not on this loop)."""
    job = app.job(job_id)
    try:
        return {"job": job_id, "state": "succeeded", "result": await job.aresult(timeout=wait)}
    except ResultTimeout:
        return {"job": job_id, "state": str(await job.astate())}
    except TaskFailed as failed:
        return {"job": job_id, "state": failed.state, "error": f"{failed.exc_type}: {failed.message}"}
    except JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None


def event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


async def progress_events(job_id: str, every: float) -> AsyncIterator[str]:
    """A ``progress`` event each time the job's progress changes, then one
    ``done`` event. Between readings of the progress the stream waits on the
    job's outcome, so its end is sent the moment the job finishes."""
    job = app.job(job_id)
    last = None
    while True:
        try:
            value = await job.aresult(timeout=every)
        except ResultTimeout:
            info = await job.ainfo()
            if info.progress is not None and info.progress != last:
                last = info.progress
                yield event("progress", {"fraction": last["fraction"], "message": last["message"]})
            continue
        except TaskFailed as failed:
            yield event("done", {"state": failed.state, "error": f"{failed.exc_type}: {failed.message}"})
            return
        yield event("done", {"state": "succeeded", "result": value})
        return


@api.get("/jobs/{job_id}/progress")
async def job_progress(job_id: str, every: float = 0.05) -> StreamingResponse:
    try:
        await app.job(job_id).astate()
    except JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    return StreamingResponse(progress_events(job_id, every), media_type="text/event-stream")


@api.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
