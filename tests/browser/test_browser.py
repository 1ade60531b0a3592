"""The dashboard in a real browser (headless Chromium, selenium): the overview of a known
queue, its numbers and charts; a failed job opened from it, requeued with actions enabled,
and run by a real worker; hostile text shown as text; the login of a token-protected
server. Skipped, with the reason, where Debian's chromium and chromium-driver are missing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from pgqueue_sync import JobStatus, QueueManager
from pgqueue_sync.web import create_app
from tests.conftest import Runner
from tests.web.shop import open_shop

from .support import chrome, missing_browser, served

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))

WAIT = 20  # seconds: a bound on what the page does by itself (load its JSON, draw)
# While a page is replaced (a form posted, a redirect followed), an element found on the old
# one goes stale: the wait reads it again.
PAGE_CHANGING = (NoSuchElementException, StaleElementReferenceException)
TOKEN = "browser-token-0123456789-abcdef"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    with chrome() as driver:
        yield driver


def loaded(browser: webdriver.Chrome) -> None:
    """Wait until the overview's script has read its JSON and drawn (a bounded wait)."""
    WebDriverWait(browser, WAIT, ignored_exceptions=PAGE_CHANGING).until(
        lambda d: d.find_element(By.ID, "live").get_attribute("data-loaded")
    )


def table(browser: webdriver.Chrome) -> dict[str, dict[str, str]]:
    rows = {}
    for tr in browser.find_elements(By.CSS_SELECTOR, "#entrypoints tbody tr"):
        name = tr.get_attribute("data-entrypoint") or ""
        cells = tr.find_elements(By.CSS_SELECTOR, "td[data-field]")
        rows[name] = {c.get_attribute("data-field") or "": c.text for c in cells}
    return rows


def script_errors(browser: webdriver.Chrome) -> list[str]:
    entries: list[dict[str, Any]] = browser.get_log("browser")  # type: ignore[no-untyped-call]
    return [e["message"] for e in entries if e["level"] == "SEVERE"]


def test_overview_then_requeue_a_failed_job_and_see_it_run(
    qm: QueueManager, browser: webdriver.Chrome, runner: Callable[..., Runner]
) -> None:
    shop = open_shop(qm)
    with served(create_app(qm.queries, actions=True)) as url:
        browser.get(url + "/")
        loaded(browser)
        rows = table(browser)
        assert {n: (r["queued"], r["deferred"], r["failed"]) for n, r in rows.items()} == {
            "emails": ("3", "0", "0"),
            "flaky": ("0", "0", "1"),
            "ok": ("0", "0", "0"),
            "reports": ("0", "2", "0"),
        }
        assert rows["ok"]["done_last_minute"] == "2"
        totals = {
            e.get_attribute("data-total"): e.text
            for e in browser.find_elements(By.CSS_SELECTOR, "[data-total]")
        }
        assert totals["queued"] == "3"
        assert totals["deferred"] == "2"
        assert totals["failed"] == "1"
        assert totals["enqueued_last_minute"] == "8"
        assert totals["done_last_minute"] == "3"
        assert "(live)" in browser.find_element(By.ID, "updated").text
        # The charts of the last hour: a line per series, a bar of the failure, a slot per
        # minute.
        assert len(browser.find_elements(By.CSS_SELECTOR, "#chart-throughput path")) == 2
        assert len(browser.find_elements(By.CSS_SELECTOR, "#chart-failures rect.bar-failed")) >= 1
        assert len(browser.find_elements(By.CSS_SELECTOR, "#chart-throughput rect.hit")) == 60

        # The failed count leads to the failed job, and the job to its traceback.
        browser.find_element(By.CSS_SELECTOR, 'tr[data-entrypoint="flaky"] a.alert').click()
        assert browser.current_url.endswith("/jobs?status=failed&entrypoint=flaky")
        browser.find_element(By.LINK_TEXT, str(shop.flaky)).click()
        assert browser.current_url.endswith(f"/jobs/{shop.flaky}")
        traceback = browser.find_element(By.ID, "traceback").text
        assert f"ValueError: order {shop.flaky} failed: the warehouse is closed" in traceback
        assert '"order": 42' in browser.find_element(By.ID, "payload").text

        browser.find_element(By.XPATH, "//button[text()='Requeue']").click()
        WebDriverWait(browser, WAIT, ignored_exceptions=PAGE_CHANGING).until(
            lambda d: f"job {shop.flaky} requeued" in d.find_element(By.TAG_NAME, "main").text
        )
        assert browser.find_element(By.CSS_SELECTOR, "h1 .badge").text == "queued"

        shop.fixed.set()
        run = runner(qm)
        [result] = qm.queries.wait_for([shop.flaky], timeout=30)
        assert result.status == JobStatus.SUCCESSFUL
        run.stop()
        browser.refresh()
        assert browser.find_element(By.CSS_SELECTOR, "h1 .badge").text == "successful"
        outcomes = [
            td.text for td in browser.find_elements(By.CSS_SELECTOR, "#log td:nth-child(2)")
        ]
        assert outcomes == ["failed", "successful"]
        assert script_errors(browser) == []


def test_hostile_text_stays_text_in_the_browser(
    qm: QueueManager, conn: psycopg.Connection[Any], browser: webdriver.Chrome
) -> None:
    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    row = conn.execute(
        sql.SQL(
            "INSERT INTO {} (entrypoint, status, payload, headers, last_error)"
            " VALUES ('mail', 'failed', %s, %s, %s) RETURNING id"
        ).format(qm.settings.ident("jobs")),
        (hostile.encode(), Jsonb({"x": hostile}), f"Traceback:\n</pre>{hostile}"),
    ).fetchone()
    assert row is not None
    qm.queries.pause("mail", reason=hostile)
    with served(create_app(qm.queries, actions=True)) as url:
        browser.get(f"{url}/jobs/{row[0]}")
        assert hostile in browser.find_element(By.ID, "traceback").text
        assert hostile in browser.find_element(By.ID, "payload").text
        assert "<script>window.pwned=2</script>" in browser.find_element(By.ID, "headers").text
        browser.get(f"{url}/paused")
        assert hostile in browser.find_element(By.ID, "paused").text
        browser.get(f"{url}/")
        loaded(browser)
        assert browser.execute_script("return window.pwned === undefined") is True
        assert browser.find_elements(By.CSS_SELECTOR, "main img") == []


def test_login_with_the_token_then_the_overview_reads_its_json(
    qm: QueueManager, browser: webdriver.Chrome
) -> None:
    open_shop(qm)
    with served(create_app(qm.queries, token=TOKEN)) as url:
        browser.get(url + "/")
        assert "/login" in browser.current_url
        field = browser.find_element(By.NAME, "token")
        field.send_keys("not the token at all")
        field.submit()
        assert "Wrong token." in browser.find_element(By.TAG_NAME, "main").text
        field = browser.find_element(By.NAME, "token")
        field.send_keys(TOKEN)
        field.submit()
        loaded(browser)
        assert table(browser)["emails"]["queued"] == "3"
        cookies = {c["name"]: c for c in browser.get_cookies()}
        assert cookies["pgqueue_sync_session"]["httpOnly"] is True
        assert TOKEN not in cookies["pgqueue_sync_session"]["value"]
