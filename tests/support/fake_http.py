"""A real HTTP server on a free port that answers fixed routes: a stand-in Prefect or MLflow."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Routes = dict[tuple[str, str], tuple[int, Any]]  # (method, path) -> (status, JSON body)


class FakeService:
    """Answers `routes` (404 otherwise) and records every (method, path) it was asked."""

    def __init__(self, routes: Routes) -> None:
        self.routes = routes
        self.requests: list[tuple[str, str]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                service.requests.append((self.command, self.path))
                status, body = service.routes.get((self.command, self.path), (404, {}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def fake_service(routes: Routes) -> Iterator[FakeService]:
    service = FakeService(routes)
    service.start()
    try:
        yield service
    finally:
        service.stop()


def prefect_routes(pool: str, *, worker_status: str | None = "ONLINE") -> Routes:
    """A Prefect API that is healthy, with one worker in `pool` (or none)."""
    workers = [] if worker_status is None else [{"name": "w", "status": worker_status}]
    return {
        ("GET", "/api/health"): (200, True),
        ("POST", f"/api/work_pools/{pool}/workers/filter"): (200, workers),
    }


MLFLOW_ROUTES: Routes = {("GET", "/health"): (200, "OK")}
