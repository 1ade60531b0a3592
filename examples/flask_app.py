"""Flask with the PgQueue extension and Flask-SQLAlchemy: a view saves a user and enqueues
their welcome email in the same transaction; a worker runs it in an app context.

    pip install -e ".[flask]" flask-sqlalchemy
    export FLASK_APP=examples/flask_app.py
    export FLASK_SQLALCHEMY_DATABASE_URI=postgresql+psycopg://localhost/app
    export FLASK_PGQUEUE_DSN=postgresql://localhost/app
    flask pgq install          # the queue's tables (flask pgq upgrade after an upgrade)
    flask run                  # the web app: POST /users {"email": "a@example.com"}
    flask pgq worker           # the workers (SIGTERM or Ctrl-C stops them gracefully)

The job and the user commit together (``db.session.commit()``), or neither exists: an
email ending in ``@invalid`` is refused after both were added, and the rollback takes the
job with it. The session must use psycopg 3 (``postgresql+psycopg://``).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, g, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from tenacity import stop_after_attempt

from pgqueue_sync import RetryPolicy
from pgqueue_sync.contrib.flask import PgQueue


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
pgq = PgQueue(session=db.session)  # a task's enqueue joins the session's transaction


class User(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]
    welcomed_by: Mapped[str | None]


@pgq.task(retry=RetryPolicy(stop=stop_after_attempt(3)))
def send_welcome(user_id: int) -> dict[str, Any]:
    """Runs in a fresh app context: the app's extensions (db) work, and g starts empty."""
    user = db.session.get(User, user_id)
    if user is None:
        return {"sent": False}
    first_in_this_context = "sent" not in g
    g.sent = user.email  # ... an email client of the app would send it here
    user.welcomed_by = current_app.name
    db.session.commit()
    return {"sent": True, "to": user.email, "fresh_g": first_in_this_context}


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_prefixed_env()  # FLASK_SQLALCHEMY_DATABASE_URI, FLASK_PGQUEUE_DSN, ...
    app.config.update(config or {})
    db.init_app(app)
    pgq.init_app(app)
    with app.app_context():
        db.create_all()

    @app.post("/users")
    def create_user() -> Any:
        email = (request.get_json(silent=True) or {}).get("email", "")
        user = User(email=email)
        db.session.add(user)
        db.session.flush()  # the user's id, in the transaction
        job_id = send_welcome.enqueue(user.id)  # in the same transaction
        if email.endswith("@invalid"):
            db.session.rollback()  # neither the user nor the job exists
            return {"error": f"cannot welcome {email}"}, 400
        db.session.commit()  # both exist, and the workers are woken
        return {"user": user.id, "job": job_id}, 201

    @app.get("/users/<int:user_id>")
    def show_user(user_id: int) -> Any:
        user = db.get_or_404(User, user_id)
        return {"email": user.email, "welcomed_by": user.welcomed_by}

    return app
