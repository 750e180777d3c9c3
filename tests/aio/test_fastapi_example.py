"""examples/fastapi_app.py served by a real uvicorn process, with a real
worker process: enqueue, await the result, stream the progress."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, wait_for

EXAMPLES = ROOT / "examples"


@pytest.fixture
def served(worker_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """The example's base URL: uvicorn on a socket bound here (no port race)
    and a worker for demo_tasks, both on this test's namespace."""
    env = {**worker_env, "PYTHONPATH": os.pathsep.join([str(EXAMPLES), str(ROOT)])}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    logs = [open(tmp_path / name, "wb") for name in ("web.log", "worker.log")]
    procs = [
        subprocess.Popen([sys.executable, "-m", "uvicorn", "fastapi_app:api", "--fd", str(sock.fileno()),
                          "--log-level", "warning"], cwd=EXAMPLES, env=env, pass_fds=[sock.fileno()],
                         stdout=logs[0], stderr=subprocess.STDOUT),
        subprocess.Popen([sys.executable, "-m", "taskq_cli.main", "worker", "demo_tasks:app", "-c", "2"],
                         cwd=EXAMPLES, env=env, stdout=logs[1], stderr=subprocess.STDOUT),
    ]
    sock.close()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        for p in procs:
            assert p.poll() is None, (tmp_path / "web.log").read_text() + (tmp_path / "worker.log").read_text()
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, 30, interval=0.05, what="uvicorn serving the example")
        yield url
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        for log in logs:
            log.close()


def test_an_endpoint_enqueues_and_another_awaits_the_result(served):
    with httpx.Client(base_url=served, timeout=30) as client:
        job = client.post("/add", params={"a": 2, "b": 3}).json()["job"]
        body = client.get(f"/jobs/{job}", params={"wait": 20}).json()
        assert body == {"job": job, "state": "succeeded", "result": 5}
        assert client.get("/jobs/no-such-job", params={"wait": 1}).status_code == 404


def test_many_concurrent_requests_share_the_event_loop(served):
    async def main() -> list[int]:
        async with httpx.AsyncClient(base_url=served, timeout=60) as client:
            async def one(i: int) -> int:
                job = (await client.post("/add", params={"a": i, "b": 1})).json()["job"]
                return int((await client.get(f"/jobs/{job}", params={"wait": 30})).json()["result"])

            return await asyncio.gather(*[one(i) for i in range(40)])

    assert asyncio.run(main()) == [i + 1 for i in range(40)]


def test_the_progress_of_a_job_streams_as_server_sent_events(served):
    with httpx.Client(base_url=served, timeout=30) as client:
        job = client.post("/walk", params={"steps": 4, "pause": 0.3}).json()["job"]
        events = []
        with client.stream("GET", f"/jobs/{job}/progress") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            name = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    name = line[len("event: "):]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[len("data: "):])))
    progress = [data for name, data in events if name == "progress"]
    fractions = [p["fraction"] for p in progress]
    assert fractions == sorted(set(fractions)) and len(fractions) >= 2  # steps 0.3 s apart, read every 0.05 s
    assert all(p["message"] == f"step {round(p['fraction'] * 4)} of 4" for p in progress)
    assert events[-1] == ("done", {"state": "succeeded", "result": "walked 4 steps"})
