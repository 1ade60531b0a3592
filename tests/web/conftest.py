"""The dashboard's tests: the shop (a known queue), the dashboard over it, and a reader of
its pages."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pgqueue_sync import QueueManager
from pgqueue_sync.web import create_app

from .shop import Shop, open_shop


@pytest.fixture
def shop(qm: QueueManager) -> Shop:
    return open_shop(qm)


@pytest.fixture
def make_client(qm: QueueManager) -> Callable[..., FlaskClient]:
    """A test client of ``create_app(qm.queries, **options)``."""

    def make(**options: Any) -> FlaskClient:
        app: Flask = create_app(qm.queries, **options)
        app.testing = True
        return app.test_client()

    return make


@pytest.fixture
def client(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    """The dashboard, read-only, no token."""
    return make_client()


class Page(HTMLParser):
    """What the tests read on a page: the text of elements by id, table rows, links, forms."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.html = html
        self.rows: dict[str, dict[str, str]] = {}  # entrypoint -> data-field -> text
        self.totals: dict[str, str] = {}
        self.links: list[tuple[str, str]] = []  # (href, text)
        self.inputs: list[dict[str, str]] = []
        self.forms: list[str] = []  # actions
        self._row: str | None = None
        self._field: str | None = None
        self._total: str | None = None
        self._href: str | None = None
        self._text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and "data-entrypoint" in a:
            self._row = a["data-entrypoint"]
            self.rows[self._row] = {}
        if tag == "td" and self._row is not None and "data-field" in a:
            self._field = a["data-field"]
            self._text = []
        if "data-total" in a:
            self._total = a["data-total"]
            self._text = []
        if tag == "a":
            self._href = a.get("href", "")
            self._text = []
        if tag == "input":
            self.inputs.append(a)
        if tag == "form":
            self.forms.append(a.get("action", ""))

    def handle_data(self, data: str) -> None:
        self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        text = "".join(self._text).strip()
        if tag == "td" and self._field is not None and self._row is not None:
            self.rows[self._row][self._field] = text
            self._field = None
        if tag == "tr":
            self._row = None
        if tag == "span" and self._total is not None:
            self.totals[self._total] = text
            self._total = None
        if tag == "a" and self._href is not None:
            self.links.append((self._href, text))
            self._href = None

    def csrf(self) -> str:
        [token] = {i["value"] for i in self.inputs if i.get("name") == "csrf_token"}
        return token

    def link(self, text: str) -> str:
        [href] = [h for h, t in self.links if t == text]
        return href


def page(client: FlaskClient, url: str, status: int = 200) -> Page:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    return Page(response.get_data(as_text=True))
