"""Cron expressions, their ticks across DST, and the catch-up plan (no database)."""

from __future__ import annotations

import builtins
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pgqueue_sync import ConfigurationError, MissingDependencyError, PsycopgDriver, QueueManager
from pgqueue_sync.cron import MISSED_AFTER, Cron, Schedule, plan

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def ticks(cron: Cron, start: str, end: str) -> list[str]:
    return [t.isoformat() for t in cron.between(at(start), at(end))]


# -- expressions ------------------------------------------------------------------------------


def test_six_fields_put_seconds_last_as_croniter_does() -> None:
    every_second = Cron("* * * * * *")
    assert ticks(every_second, "2030-01-01T00:00:00+00:00", "2030-01-01T00:00:03+00:00") == [
        "2030-01-01T00:00:00+00:00",
        "2030-01-01T00:00:01+00:00",
        "2030-01-01T00:00:02+00:00",
        "2030-01-01T00:00:03+00:00",
    ]
    second_5 = Cron("* * * * * 5")  # second 5 of every minute
    assert ticks(second_5, "2030-01-01T00:00:00+00:00", "2030-01-01T00:02:00+00:00") == [
        "2030-01-01T00:00:05+00:00",
        "2030-01-01T00:01:05+00:00",
    ]


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "out of range"),
        ("* * *", "5, 6 or 7 columns"),
        ("every minute", "invalid cron expression .every minute.: "),
        ("", "non-empty"),
        ("0 0 31 2 *", "never fires"),
    ],
)
def test_an_invalid_expression_is_refused_with_croniters_reason(
    expression: str, reason: str
) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        Cron(expression)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown time zone 'Mars/Olympus'"):
        Cron("* * * * *", "Mars/Olympus")


def test_periodic_refuses_bad_declarations_at_once() -> None:
    qm = QueueManager(PsycopgDriver("host=127.0.0.1 dbname=unused"))
    with pytest.raises(ConfigurationError, match=r"invalid cron expression '\* \* 32 \* \*'"):
        qm.periodic("* * 32 * *")
    with pytest.raises(ConfigurationError, match="catch_up must be one of"):
        qm.periodic("* * * * *", catch_up="some")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="catch_up_limit"):
        qm.periodic("* * * * *", catch_up_limit=0)
    with pytest.raises(ConfigurationError, match="payload must be bytes"):
        qm.periodic("* * * * *", payload="text")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="concurrency_limit"):
        qm.periodic("* * * * *", concurrency_limit=0)
    with pytest.raises(ConfigurationError, match="invalid entrypoint name"):
        qm.periodic("* * * * *")(lambda job: None)
    assert qm.entrypoints == {}  # nothing half-registered

    @qm.periodic("*/5 * * * *", name="cleanup", timezone="Europe/Paris", priority=3)
    def handler(job: object) -> None: ...

    schedule = qm.entrypoints["cleanup"].schedule
    assert schedule == Schedule("cleanup", "*/5 * * * *", "Europe/Paris", "latest", 100, 3)
    with pytest.raises(ConfigurationError, match="already registered"):
        qm.periodic("* * * * *", name="cleanup")


def test_without_croniter_periodic_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = builtins.__import__

    def no_croniter(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "croniter" or name.startswith("croniter."):
            raise ImportError("No module named 'croniter'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_croniter)
    for module in [m for m in list(__import__("sys").modules) if m.startswith("croniter")]:
        monkeypatch.delitem(__import__("sys").modules, module)
    qm = QueueManager(PsycopgDriver("host=127.0.0.1 dbname=unused"))
    with pytest.raises(MissingDependencyError, match=r"pip install 'pgqueue-sync\[cron\]'") as info:
        qm.periodic("* * * * *")
    assert isinstance(info.value, ImportError)
    assert qm.entrypoints == {}


# -- DST: "30 2 * * *" in Europe/Paris, as croniter and zoneinfo define it ----------------------

PARIS_0230 = Cron("30 2 * * *", "Europe/Paris")


def test_spring_forward_the_missing_0230_fires_at_0300_once() -> None:
    # 2024-03-31: clocks go from 02:00 to 03:00 (CET to CEST); 02:30 does not exist that day.
    assert ticks(PARIS_0230, "2024-03-30T00:00:00+01:00", "2024-04-01T12:00:00+02:00") == [
        "2024-03-30T01:30:00+00:00",  # 02:30 CET
        "2024-03-31T01:00:00+00:00",  # 03:00 CEST: croniter moves the missing 02:30 there
        "2024-04-01T00:30:00+00:00",  # 02:30 CEST
    ]


def test_fall_back_the_doubled_0230_fires_twice() -> None:
    # 2024-10-27: clocks go from 03:00 back to 02:00 (CEST to CET); 02:30 happens twice.
    assert ticks(PARIS_0230, "2024-10-26T00:00:00+02:00", "2024-10-28T12:00:00+01:00") == [
        "2024-10-26T00:30:00+00:00",  # 02:30 CEST
        "2024-10-27T00:30:00+00:00",  # 02:30 CEST, the first time
        "2024-10-27T01:30:00+00:00",  # 02:30 CET, the second time
        "2024-10-28T01:30:00+00:00",  # 02:30 CET
    ]


@pytest.mark.parametrize(
    "expression", ["30 2 * * *", "0 * * * *", "*/7 * * * *", "15,45 1-3 * * *", "0 0 * * * */20"]
)
@pytest.mark.parametrize("day", ["2024-03-30T00:00:00+01:00", "2024-10-26T00:00:00+02:00"])
def test_counting_back_finds_the_ticks_counting_forward_finds(expression: str, day: str) -> None:
    cron = Cron(expression, "Europe/Paris")
    start = at(day)
    end = start + timedelta(days=2, seconds=1)
    forward = list(cron.between(start, end))
    assert forward
    assert cron.last(end, len(forward) + 5, start) == forward
    assert cron.latest_until(forward[-1]) == forward[-1]
    assert cron.latest_until(forward[-1] - timedelta(microseconds=1)) == forward[-2]


# -- the plan: what a claim enqueues ----------------------------------------------------------

MINUTELY = Cron("* * * * *")
T0 = at("2030-01-01T00:00:00+00:00")


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def test_nothing_is_due_before_the_cursor() -> None:
    assert plan(MINUTELY, minute(1), minute(0.9), "all", 5).ticks == []


@pytest.mark.parametrize("catch_up", ["latest", "none", "all"])
def test_ticks_at_most_missed_after_late_are_on_time_and_all_enqueued(catch_up: Any) -> None:
    every_second = Cron("* * * * * *")
    now = T0 + MISSED_AFTER
    decided = plan(every_second, T0, now, catch_up, 3)
    assert len(decided.ticks) == 61
    assert not decided.missed
    assert decided.next_tick == now + timedelta(seconds=1)


def test_after_downtime_latest_enqueues_the_most_recent_tick_only() -> None:
    decided = plan(MINUTELY, minute(1), minute(10.5), "latest", 5)
    assert decided.ticks == [minute(10)]
    assert decided.missed
    assert decided.next_tick == minute(11)


def test_after_downtime_none_enqueues_nothing() -> None:
    decided = plan(MINUTELY, minute(1), minute(10.5), "none", 5)
    assert decided.ticks == []
    assert decided.next_tick == minute(11)


def test_after_downtime_all_enqueues_the_most_recent_up_to_the_limit() -> None:
    assert plan(MINUTELY, minute(1), minute(10.5), "all", 3).ticks == [
        minute(8),
        minute(9),
        minute(10),
    ]
    assert plan(MINUTELY, minute(8), minute(10), "all", 100).ticks == [
        minute(8),
        minute(9),
        minute(10),
    ]


def test_a_paused_schedule_skips_its_due_ticks() -> None:
    decided = plan(MINUTELY, minute(1), minute(3), "all", 5, paused=True)
    assert decided.ticks == []
    assert decided.next_tick == minute(4)


def test_a_year_of_downtime_on_a_schedule_of_every_second_plans_at_once() -> None:
    every_second = Cron("* * * * * *")
    now = T0 + timedelta(days=365, microseconds=500)
    decided = plan(every_second, T0, now, "all", 100)
    assert len(decided.ticks) == 100
    assert decided.ticks[-1] == T0 + timedelta(days=365)
