"""A web process that only submits work: it does not import the tasks, it
enqueues them by name and waits for their results. Standard library only.

    taskq worker demo_tasks:app          # in examples/, another terminal
    python examples/web_producer.py --port 8000
    curl 'http://127.0.0.1:8000/add?a=2&b=3'        -> {"job": "...", "result": 5}
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from taskq import ResultTimeout, TaskFailed, TaskQ

app = TaskQ("web")  # same server as the workers: embedded ./.taskq or TASKQ_REDIS_URL


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path != "/add":
            return self.reply(404, {"error": "try /add?a=1&b=2"})
        q = parse_qs(url.query)
        try:
            a, b = int(q["a"][0]), int(q["b"][0])
        except (KeyError, ValueError):
            return self.reply(400, {"error": "a and b must be integers"})
        job = app.enqueue("demo_tasks.add", a, b)
        try:
            self.reply(200, {"job": job.id, "result": job.result(timeout=10)})
        except TaskFailed as exc:
            self.reply(500, {"job": job.id, "error": f"{exc.exc_type}: {exc.message}"})
        except ResultTimeout:
            self.reply(504, {"job": job.id, "error": "no result yet; is a worker running?"})

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"listening on http://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
