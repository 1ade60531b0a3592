"""The outbox pattern with Flask: an order and its confirmation job commit together.

    PGQUEUE_DSN=postgresql://localhost/app flask --app examples/outbox_flask run
    PGQUEUE_DSN=postgresql://localhost/app python examples/consumer.py   # or any worker

POST /orders {"item": "book"} saves the order and enqueues "send_confirmation" in the same
transaction; POST {"item": ""} fails after both inserts, and neither exists afterwards.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, request
from psycopg import sql
from psycopg_pool import ConnectionPool

from pgqueue_sync import Job, PsycopgDriver, QueueManager, Settings


def create_app() -> Flask:
    settings = Settings.from_env()
    pool = ConnectionPool(os.environ.get("PGQUEUE_DSN", ""), min_size=1, max_size=4, open=True)
    qm = QueueManager(PsycopgDriver(pool), settings=settings)
    qm.queries.install()
    orders = sql.Identifier(settings.schema, "orders")
    with pool.connection() as conn:
        conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (id serial PRIMARY KEY, item text)").format(
                orders
            )
        )

    @qm.entrypoint("send_confirmation")
    def send_confirmation(job: Job) -> None:
        print(f"confirmation email for order {(job.payload or b'').decode()}")

    app = Flask(__name__)
    app.extensions["pgqueue"] = qm
    app.extensions["pgqueue_pool"] = pool

    @app.post("/orders")
    def create_order() -> Any:
        item = (request.get_json(silent=True) or {}).get("item", "")
        with pool.connection() as conn:  # one transaction: committed on exit, or rolled back
            row = conn.execute(
                sql.SQL("INSERT INTO {} (item) VALUES (%s) RETURNING id").format(orders), (item,)
            ).fetchone()
            assert row is not None
            order_id = row[0]
            qm.queries.enqueue("send_confirmation", str(order_id).encode(), connection=conn)
            if not item:
                raise ValueError("empty item")  # rolls back the order AND its job
        return {"order_id": order_id}, 201

    @app.errorhandler(ValueError)
    def bad_request(exc: ValueError) -> Any:
        return {"error": str(exc)}, 400

    return app
