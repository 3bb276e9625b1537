"""The worker's small HTTP endpoint for probes and Prometheus (`FS_HEALTH_PORT`).

The worker is not a web service (Faust's own web server stays off: it would bind all
interfaces); when `FS_HEALTH_PORT` is set it answers, on `FS_HEALTH_HOST` (loopback by
default, `0.0.0.0` in a pod):

- `GET /health/live`: 200 while the worker's event loop runs (a liveness probe);
- `GET /health`: 200 once the worker has started consuming, with its counters as JSON;
  503 with `"status": "failing"` and the error while its processing keeps failing;
  `definitions` is `{"status": "refused", "detail": ...}` while the definitions on disk
  are not run (they do not load, or change a view's layout), with what runs instead;
- `GET /metrics`: the process's Prometheus metrics (text format; the `fs_worker_*`
  counters of `observability.worker_monitor`), so one port serves probes and scrapes.

Unlike the metrics server of `FS_WORKER_METRICS_PORT` (a thread), this one runs on the
worker's event loop, so a liveness probe fails when the loop is stuck.

>>> server = await start_health_server("127.0.0.1", 9000, lambda: {"ready": True})  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Status = Callable[[], dict[str, Any]]


async def start_health_server(host: str, port: int, status: Status) -> asyncio.Server:
    """Serve the endpoints above; `status()` says whether the worker is ready and why."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (
                b"\r\n",
                b"\n",
                b"",
            ):
                pass  # headers are not needed
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            code, content_type, body = _respond(path, status)
            head = (
                f"HTTP/1.1 {code}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


def _respond(path: str, status: Status) -> tuple[str, str, bytes]:
    if path == "/health/live":
        return "200 OK", "application/json", b'{"status":"ok"}'
    if path == "/health":
        state = status()
        ok = bool(state.get("ready")) and not state.get("failing")
        word = "failing" if state.get("failing") else "ok" if ok else "starting"
        body = orjson.dumps({"status": word, **state})
        return ("200 OK" if ok else "503 Service Unavailable"), "application/json", body
    if path == "/metrics":
        return "200 OK", CONTENT_TYPE_LATEST, generate_latest()
    return "404 Not Found", "text/plain", b"not found\n"
