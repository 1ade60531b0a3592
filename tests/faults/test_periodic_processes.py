"""Three worker processes declaring one schedule of every second: each second's tick is
enqueued once, its job is due at the tick, and its handler runs once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta

import psycopg
import pytest

from tests.faults.conftest import ROOT
from tests.faults.periodic_proc import TICKS_DDL

PROCESSES = 3
RUN_FOR = 6.0


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_three_workers_enqueue_each_second_once(
    fdsn: str, fschema: str, procs: list[subprocess.Popen[str]]
) -> None:
    with psycopg.connect(fdsn, autocommit=True) as conn:
        conn.execute(TICKS_DDL.format(schema=fschema))
    args = [sys.executable, "-m", "tests.faults.periodic_proc", fdsn, fschema, "* * * * * *"]
    for _ in range(PROCESSES):
        proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    time.sleep(RUN_FOR)  # the scenario's length: three workers competing for every tick
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * PROCESSES, outputs
    enqueued_by = [json.loads(out.splitlines()[-1])["enqueued"] for out, _ in outputs]

    with psycopg.connect(fdsn, autocommit=True) as conn:
        # Every job the schedule made, queued or logged, by the tick in its headers.
        made = conn.execute(
            f"SELECT headers->>'tick' FROM \"{fschema}\".pgqueue_jobs "
            f"UNION ALL SELECT headers->>'tick' FROM \"{fschema}\".pgqueue_log"
        ).fetchall()
        late = conn.execute(
            f"SELECT max(extract(epoch FROM enqueued - (headers->>'tick')::timestamptz)) "
            f'FROM "{fschema}".pgqueue_log'
        ).fetchone()
        runs = conn.execute(
            f'SELECT tick, execute_after, job_id, pid FROM "{fschema}".ticks ORDER BY tick'
        ).fetchall()
    per_tick = Counter(str(tick) for (tick,) in made)
    assert max(per_tick.values()) == 1, per_tick  # no tick enqueued twice
    ticks = sorted(datetime.fromisoformat(str(tick)) for (tick,) in made)
    span = int((ticks[-1] - ticks[0]).total_seconds())
    assert ticks == [ticks[0] + timedelta(seconds=s) for s in range(span + 1)]  # none missing
    assert sum(enqueued_by) == len(made)
    ran = [tick for tick, _, _, _ in runs]
    assert len(set(ran)) == len(ran), "a tick's handler ran twice"
    assert all(due == tick for tick, due, _, _ in runs), "a job not due at its tick"
    assert len(ran) >= RUN_FOR - 2
    # Each second from the first tick to the last, none missing.
    first, last = ran[0], ran[-1]
    seconds = int((last - first).total_seconds())
    assert ran == [first + timedelta(seconds=s) for s in range(seconds + 1)]
    print(
        f"\n{len(made)} ticks enqueued by {PROCESSES} processes ({enqueued_by}), "
        f"{len(ran)} run by {len({pid for *_, pid in runs})} process(es), none twice; "
        f"enqueued at most {float(late[0] if late else 0) * 1000:.0f} ms after its tick"
    )
