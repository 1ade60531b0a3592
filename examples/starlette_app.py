"""Starlette: request handlers enqueue jobs; the worker runs in the app's lifespan.

    pip install starlette uvicorn
    pgq-sync install --dsn postgresql://localhost/app
    PGQUEUE_DSN=postgresql://localhost/app uvicorn --factory examples.starlette_app:create_app

POST /images/{name} enqueues a thumbnail job and answers 202 with its id; the async handler
runs on the app's event loop and stores the thumbnail with the app's (async) store;
GET /thumbnails/{name} serves it, GET /jobs/{id} tells how the job went.

Each web process runs a worker. PGQUEUE_EMBEDDED_WORKER=0 keeps it out of the web process;
run `python examples/starlette_app.py worker` instead (with a shared store then: the
in-memory one here is only seen by its own process).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Protocol

import anyio
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgqueue_sync import Job, PsycopgDriver
from pgqueue_sync_aio import AsyncQueueManager


class ThumbnailStore(Protocol):
    """Where thumbnails go: S3, Redis, ... through their async client."""

    async def put(self, name: str, data: bytes) -> None: ...

    async def get(self, name: str) -> bytes | None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._items: dict[str, bytes] = {}

    async def put(self, name: str, data: bytes) -> None:
        self._items[name] = data

    async def get(self, name: str) -> bytes | None:
        return self._items.get(name)


def make_queue(pool: ConnectionPool, store: ThumbnailStore) -> AsyncQueueManager:
    # Producer calls borrow pool connections: at most max_size run at once, in threads.
    qm = AsyncQueueManager(PsycopgDriver(pool))

    @qm.entrypoint("thumbnail")
    async def make_thumbnail(job: Job) -> bytes:
        name = (job.payload or b"").decode()
        thumbnail = f"thumbnail of {name}".encode()
        await store.put(name, thumbnail)
        return thumbnail  # also kept in the log as the job's result

    return qm


def create_app(
    store: ThumbnailStore | None = None, *, start_worker: bool | None = None
) -> Starlette:
    if start_worker is None:
        start_worker = os.environ.get("PGQUEUE_EMBEDDED_WORKER", "1") == "1"
    thumbnails: ThumbnailStore = store if store is not None else MemoryStore()
    pool = ConnectionPool(os.environ.get("PGQUEUE_DSN", ""), min_size=1, max_size=4, open=False)
    qm = make_queue(pool, thumbnails)

    async def upload(request: Request) -> Response:
        name = request.path_params["name"]
        [job_id] = await qm.queries.enqueue("thumbnail", name.encode())
        return JSONResponse({"job_id": job_id}, status_code=202)

    async def job_status(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        if await qm.queries.get_jobs([job_id]):
            return JSONResponse({"status": "pending"})
        entries = await qm.queries.log(job_ids=[job_id])
        if not entries:
            return JSONResponse({"status": "unknown"}, status_code=404)
        return JSONResponse({"status": str(entries[0].status)})

    async def thumbnail(request: Request) -> Response:
        data = await thumbnails.get(request.path_params["name"])
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="text/plain")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(pool.open)
        try:
            await qm.queries.install()  # idempotent; usually done once at deploy time
            async with anyio.create_task_group() as tg:
                if start_worker:
                    tg.start_soon(lambda: qm.run(workers=16))
                yield
                qm.alive = False  # graceful: running jobs finish, then run() returns
        finally:
            await anyio.to_thread.run_sync(pool.close)

    return Starlette(
        routes=[
            Route("/images/{name}", upload, methods=["POST"]),
            Route("/jobs/{job_id:int}", job_status),
            Route("/thumbnails/{name}", thumbnail),
        ],
        lifespan=lifespan,
    )


async def run_worker() -> None:
    """The worker alone, in its own process (SIGTERM or Ctrl-C stop it gracefully)."""
    with ConnectionPool(os.environ.get("PGQUEUE_DSN", ""), min_size=1, max_size=2) as pool:
        qm = make_queue(pool, MemoryStore())
        await qm.queries.install()
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: qm.run(workers=16))
                async for _ in signals:
                    qm.alive = False
                    break


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    anyio.run(run_worker)
