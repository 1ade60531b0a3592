"""Screenshots of every page of the web dashboard, for docs/dashboard.md.

    python -m tests.browser.screenshots [--dsn DSN] [--out docs/img]

Builds a queue in a throwaway schema (an hour of history written into the log, then real
jobs: a backlog, deferred jobs, failures with their tracebacks, jobs running in two real
workers, a paused entrypoint), serves the dashboard with actions enabled on 127.0.0.1,
and saves one PNG per page from headless Chromium (Debian's chromium and chromium-driver).
The schema is dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import tenacity
from psycopg import sql
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import pgqueue_sync
from pgqueue_sync import Job, PsycopgDriver, Queries, QueueManager, RetryPolicy, Settings
from pgqueue_sync.web import create_app

from .support import chrome, missing_browser, served

WIDTH = 1360
TOKEN = "screenshots-token-0123456789"

# An hour of outcomes, minute by minute: a wave of traffic, a few exceptions, a pick-up
# latency that climbs while the backlog grows.
HISTORY = """
INSERT INTO {log} (job_id, entrypoint, status, priority, attempts, enqueued, created, due,
                   duration, traceback)
SELECT 900000 + m * 1000 + k,
       (ARRAY['emails', 'invoices', 'reports', 'exports'])[1 + (m + k) % 4],
       (CASE WHEN (m * 7 + k) % 41 = 0 THEN 'exception' ELSE 'successful' END)::text::{status},
       0, 1,
       t.at - make_interval(secs => 2 + lat), t.at,
       t.at - make_interval(secs => 0.2 + lat), interval '200 ms',
       CASE WHEN (m * 7 + k) % 41 = 0
            THEN E'Traceback (most recent call last):\\nTimeoutError: smtp.example timed out'
       END
FROM generate_series(1, 59) AS m,
     LATERAL (SELECT (45 + 30 * sin(m / 7.0))::int AS n,
                     0.08 + 1.5 * greatest(0, sin(m / 9.0)) AS lat) AS s,
     LATERAL generate_series(1, s.n) AS k,
     LATERAL (SELECT now() - make_interval(mins => m)
                     + make_interval(secs => 55.0 * k / s.n) AS at) AS t
"""


def fill(
    dsn: str, settings: Settings, release: threading.Event
) -> tuple[list[QueueManager], list[int]]:
    """The queue of the screenshots; returns the workers' managers (running) and the ids of
    the jobs that fail."""
    driver = PsycopgDriver(dsn)
    producer = QueueManager(driver, settings=settings, check_entrypoints=False)
    producer.queries.install()
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = {k: settings.ident(k) for k in ("log", "status")}
        conn.execute(sql.SQL(HISTORY).format(**names))
    q = producer.queries
    q.enqueue(["emails"] * 1250, [b'{"to": "customer@example.com"}'] * 1250)
    q.enqueue(["reports"] * 40, [None] * 40, execute_after=timedelta(hours=2))
    q.enqueue("reports", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x02\x00" + bytes(range(48)))
    q.pause("reports", reason="quarter-end freeze until 18:00")

    workers = []
    for number in range(2):
        qm = QueueManager(PsycopgDriver(dsn), settings=settings)

        @qm.entrypoint("exports")
        def export(job: Job) -> None:
            release.wait(120)

        @qm.entrypoint("invoices", retry=RetryPolicy(stop=tenacity.stop_after_attempt(1)))
        def invoice(job: Job) -> None:
            charge(job)

        thread = threading.Thread(
            target=qm.run, kwargs={"workers": 4 + 2 * number}, name=f"worker-{number}"
        )
        thread.start()
        workers.append(qm)
    failing = q.enqueue(
        ["invoices"] * 3,
        [b'{"invoice": 1042, "amount": "129.00", "currency": "EUR"}'] * 3,
        headers={"tenant": "north", "traceparent": "00-4bf92f3577b34da6-00f067aa0ba902b7-01"},
    )
    q.enqueue(["exports"] * 3, [b'{"format": "csv", "rows": 120000}'] * 3)
    return workers, failing


def charge(job: Job) -> None:
    """The failing handler: a traceback of a few frames."""

    def call_gateway(amount: str) -> None:
        raise ConnectionError(f"payment gateway refused invoice {job.id}: card expired")

    call_gateway("129.00")


def shoot(
    browser: webdriver.Chrome, url: str, path: Path, wait_live: bool = False, height: int = 0
) -> None:
    """A PNG of the page at ``url``: the whole page (or ``height`` pixels of it)."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": height or 200, "deviceScaleFactor": 1, "mobile": False},
    )
    browser.get(url)
    if wait_live:
        WebDriverWait(browser, 30).until(
            lambda d: d.find_element(By.ID, "live").get_attribute("data-loaded")
        )
    if not height:
        height = int(browser.execute_script("return document.documentElement.scrollHeight"))
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    if wait_live:  # redrawn at the new size
        browser.execute_script("window.dispatchEvent(new Event('resize'))")
        WebDriverWait(browser, 5).until(
            lambda d: d.execute_script("return document.querySelectorAll('.plot .hit').length")
        )
    browser.save_screenshot(str(path))
    print(f"wrote {path}")


def tidy_tracebacks(dsn: str, settings: Settings) -> None:
    """Tracebacks as a reader's checkout shows them: paths relative to the project."""
    root = str(Path(pgqueue_sync.__file__).resolve().parents[1]) + "/"
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table, column in (("jobs", "last_error"), ("log", "traceback")):
            conn.execute(
                sql.SQL("UPDATE {} SET {} = replace({}, %s, '')").format(
                    settings.ident(table), sql.Identifier(column), sql.Identifier(column)
                ),
                (root,),
            )


def registered(queries: Queries) -> None:
    """Wait (30 s at most) until the workers' rows show the three exports running: the
    registry is written with each heartbeat."""
    deadline = time.monotonic() + 30
    while sum(w.busy for w in queries.workers()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)


@contextlib.contextmanager
def throwaway(dsn: str) -> Iterator[Settings]:
    schema = f"pgq_screens_{uuid.uuid4().hex[:8]}"
    try:
        yield Settings(schema=schema)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dsn", default="host=127.0.0.1 port=5432 user=postgres dbname=test")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    reason = missing_browser()
    if reason is not None:
        raise SystemExit(reason)
    args.out.mkdir(parents=True, exist_ok=True)
    release = threading.Event()
    with throwaway(args.dsn) as settings:
        workers, failing = fill(args.dsn, settings, release)
        try:
            queries = QueueManager(PsycopgDriver(args.dsn), settings=settings).queries
            queries.wait_for(failing, timeout=60)
            tidy_tracebacks(args.dsn, settings)
            registered(queries)
            failed = failing[-1]
            binary = queries.list_jobs(status="queued", entrypoint="reports", limit=1).jobs[0].id
            app = create_app(queries, actions=True, page_size=20)
            with served(app) as url, chrome() as browser:
                shoot(browser, f"{url}/", args.out / "dashboard-overview.png", wait_live=True)
                shoot(browser, f"{url}/jobs", args.out / "dashboard-jobs.png")
                shoot(browser, f"{url}/jobs/{failed}", args.out / "dashboard-job.png")
                shoot(browser, f"{url}/jobs/{binary}", args.out / "dashboard-job-hex.png")
                shoot(browser, f"{url}/workers", args.out / "dashboard-workers.png")
                shoot(browser, f"{url}/paused", args.out / "dashboard-paused.png")
                if callable(getattr(queries, "schedules", None)):
                    shoot(browser, f"{url}/schedules", args.out / "dashboard-schedules.png")
            with served(create_app(queries, token=TOKEN)) as url, chrome() as browser:
                shoot(browser, f"{url}/login", args.out / "dashboard-login.png", height=480)
        finally:
            release.set()
            for qm in workers:
                qm.alive = False


if __name__ == "__main__":
    main()
