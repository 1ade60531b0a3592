"""Flask: views enqueue jobs; a worker runs them, in a thread of the app or its own process.

    pip install flask
    PGQUEUE_DSN=postgresql://localhost/app flask --app examples/flask_app run     # web + worker
    PGQUEUE_DSN=postgresql://localhost/app python examples/flask_app.py worker    # worker only

Set PGQUEUE_EMBEDDED_WORKER=0 to keep the worker out of the web process (then run it with
`python examples/flask_app.py worker`, the recommended layout in production).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import Any

from flask import Flask, jsonify
from psycopg_pool import ConnectionPool

from pgqueue_sync import Job, PsycopgDriver, QueueManager

pool = ConnectionPool(os.environ.get("PGQUEUE_DSN", ""), min_size=1, max_size=4, open=False)
qm = QueueManager(PsycopgDriver(pool))


@qm.entrypoint("thumbnail")
def make_thumbnail(job: Job) -> bytes:
    image = (job.payload or b"").decode()
    return f"thumbnail of {image}".encode()  # kept in the log as the job's result


def create_app(start_worker: bool | None = None) -> Flask:
    app = Flask(__name__)
    pool.open()
    qm.queries.install()

    @app.post("/images/<name>")
    def upload(name: str) -> Any:
        [job_id] = qm.queries.enqueue("thumbnail", name.encode())
        return jsonify(job_id=job_id), 202

    @app.get("/jobs/<int:job_id>")
    def job_status(job_id: int) -> Any:
        if qm.queries.get_jobs([job_id]):
            return jsonify(status="pending")
        entries = qm.queries.log(job_ids=[job_id])
        if not entries:
            return jsonify(status="unknown"), 404
        entry = entries[0]
        result = entry.result.decode() if entry.result else None
        return jsonify(status=str(entry.status), result=result)

    @app.get("/queue")
    def queue() -> Any:
        sizes = qm.queries.queue_size()
        return jsonify(
            [{"entrypoint": s.entrypoint, "status": str(s.status), "count": s.count} for s in sizes]
        )

    if start_worker is None:
        start_worker = os.environ.get("PGQUEUE_EMBEDDED_WORKER", "1") == "1"
    if start_worker:
        start_worker_thread()
    return app


_workers: list[threading.Thread] = []


def start_worker_thread() -> threading.Thread:
    """Run qm.run() in a daemon thread; stop it gracefully when the process exits."""
    if not _workers or not _workers[-1].is_alive():
        worker = threading.Thread(
            target=qm.run, kwargs={"workers": 4}, name="pgqueue-worker", daemon=True
        )
        worker.start()
        _workers.append(worker)
        atexit.register(stop_worker_thread)
    return _workers[-1]


def stop_worker_thread() -> None:
    qm.alive = False
    for worker in _workers:
        worker.join(30)


def run_worker() -> None:
    pool.open()
    qm.queries.install()
    signal.signal(signal.SIGTERM, lambda signum, frame: setattr(qm, "alive", False))
    signal.signal(signal.SIGINT, lambda signum, frame: setattr(qm, "alive", False))
    qm.run(workers=8)


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    run_worker()
