"""What enqueue hooks add to the jobs' headers (no database): every job gets it, the
caller's own headers win, and arguments enqueue will refuse are left for it to refuse."""

from __future__ import annotations

from pgqueue_sync.enqueue import with_headers

EXTRA = {"traceparent": "00-ab-cd-01"}


def test_no_headers_become_the_extra_ones() -> None:
    assert with_headers(None, EXTRA) == EXTRA


def test_the_callers_headers_win() -> None:
    assert with_headers({"traceparent": "mine", "a": 1}, EXTRA) == {"traceparent": "mine", "a": 1}


def test_each_job_of_a_list_gets_them() -> None:
    assert with_headers([None, {"a": 1}], EXTRA) == [EXTRA, {**EXTRA, "a": 1}]


def test_nothing_to_add_changes_nothing() -> None:
    headers = [{"a": 1}]
    assert with_headers(headers, {}) is headers


def test_what_enqueue_refuses_is_left_for_it() -> None:
    assert with_headers("not a mapping", EXTRA) == "not a mapping"
    assert with_headers([None, 3], EXTRA) == [EXTRA, 3]
