"""Crash safety: SIGKILL a writer at random moments; concurrent ingest processes.

A forked writer appends events through the public API (single events, multi-event
transactions, real CSV ingests, proposals, atomic config rewrites), some with multi-megabyte
payloads so a kill can land inside a ``write``. After each kill the campaign must load without
writing, every event the writer acknowledged (printed after ``append`` returned) must be in the
log unaltered, and the next write must set a torn tail aside.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from activemil.campaigns import Campaign, Event, ingest, propose
from activemil.campaigns.events import validate_record
from activemil.campaigns.store import FileLock, atomic_write, scan_log
from activemil.errors import StateError
from activemil.space import DesignSpace


def _writer(path: Path, ids: list[str], wfd: int, seed: int) -> None:
    camp = Campaign.open(path)
    rng = random.Random(seed)
    config = (path / "campaign.json").read_bytes()
    k = 0
    while True:
        k += 1
        r = rng.random()
        big = "x" * rng.choice([0, 50, 1_000_000, 3_000_000])
        if r < 0.35:
            evs = [Event.new("submitted", rng.choice(ids), None, None, via="dft", note=big)]
            camp.append(evs)
        elif r < 0.7:
            evs = [Event.new("measured", rng.choice(ids), None, None, value=rng.random(),
                             source=f"w{seed}-{k}-{j}", note=big if j == 0 else "")
                   for j in range(rng.randint(2, 5))]
            camp.append(evs)
        elif r < 0.8:
            try:
                evs = propose(camp, rng.randint(1, 3), seed=k).events
            except StateError:  # the small space is all in flight
                continue
        elif r < 0.95:
            rows = []
            for j in range(rng.randint(1, 4)):
                a = rng.randint(0, 4)
                b = rng.randint(0, 4 - a)
                rows.append({"Ni": a / 4, "Fe": b / 4, "Co": (4 - a - b) / 4,
                             "value": rng.uniform(200, 500), "source": f"i{seed}-{k}-{j}"})
            csv_path = path.parent / f"in-{seed}-{k}.csv"
            pd.DataFrame(rows).to_csv(csv_path, index=False)
            evs = ingest(camp, csv_path).events
        else:
            atomic_write(path / "campaign.json", config)
            continue
        os.write(wfd, "".join(f"{e.event_id} {e.kind} {e.candidate}\n" for e in evs).encode())


def _trial(root: Path, ids: list[str], seed: int) -> tuple[int, bool]:
    path = root / f"t{seed}"
    Campaign.create(path, DesignSpace(("Ni", "Fe", "Co"), step=0.25), target="eta",
                    maximize=False, unit="mV")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: write until killed
        os.close(rfd)
        try:
            _writer(path, ids, wfd, seed)
        finally:
            os._exit(1)
    os.close(wfd)
    time.sleep(random.Random(seed).uniform(0.002, 0.25))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    chunks = []
    while chunk := os.read(rfd, 65536):
        chunks.append(chunk)
    os.close(rfd)
    text = b"".join(chunks).decode()
    acked = [ln.split(" ") for ln in text.split("\n")[:-1]]  # no newline: not acknowledged

    raw = (path / "events.jsonl").read_bytes()
    torn = bool(scan_log(raw, "log", validate_record).tail)
    camp = Campaign.open(path)  # must load
    events = camp.events()  # reading ignores (and reports) a torn tail, never writes
    camp.state()  # must fold
    assert (path / "events.jsonl").read_bytes() == raw
    assert bool(camp.notices) == torn
    present = {e.event_id: (e.kind, e.candidate) for e in events}
    missing = [a for a, *_ in acked if a not in present]
    assert not missing, f"trial {seed}: acknowledged events lost: {missing[:3]}"
    altered = [a for a, kind, cand in acked if present[a] != (kind, cand)]
    assert not altered, f"trial {seed}: acknowledged events altered: {altered[:3]}"
    # the campaign keeps working after the crash; the write sets the torn tail aside first
    camp.append([Event.new("submitted", ids[0], None, None, via="synthesis")])
    assert not scan_log(camp.events_path.read_bytes(), "log", validate_record).tail
    assert bool(list(path.glob("events.torn-*.jsonl"))) == torn
    assert len(Campaign.open(path).events()) == len(events) + 1
    return len(acked), torn


def _run_trials(tmp_path: Path, n: int) -> None:
    ids = list(DesignSpace(("Ni", "Fe", "Co"), step=0.25).enumerate().ids)
    results = [_trial(tmp_path, ids, seed) for seed in range(n)]
    assert sum(a for a, _ in results) > 0  # the writers did get work done
    print(f"{n} kills, {sum(t for _, t in results)} left a torn tail, "
          f"{sum(a for a, _ in results)} acknowledged events, none lost")


def test_kill_writer_at_random_points(tmp_path):
    _run_trials(tmp_path, 30)


def test_concurrent_ingest_processes_both_land(tmp_path):
    c = Campaign.create(tmp_path / "c", DesignSpace(("Ni", "Fe", "Co"), step=0.1),
                        target="eta", maximize=False, unit="mV")
    ids = propose(c, 10, seed=0).table["id"].tolist()
    files = []
    for k, part in enumerate((ids[:5], ids[5:])):
        f = tmp_path / f"m{k}.csv"
        pd.DataFrame({"id": part, "value": [300 + k * 10 + j for j in range(5)],
                      "source": f"lab{k}"}).to_csv(f, index=False)
        files.append(f)
    env = {**os.environ, "ACTIVEMIL_LOCK_TIMEOUT": "60"}
    cmd = [sys.executable, "-m", "activemil.cli", "ingest", str(c.path)]
    # hold the lock while both start, so they really contend for it
    with FileLock(c.path / ".lock", "test"):
        procs = [subprocess.Popen([*cmd, str(f)], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for f in files]
        time.sleep(1.0)
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    obs = Campaign.open(c.path).observations()
    assert sorted(obs["id"]) == sorted(ids)
    assert sorted(obs["sources"].unique()) == ["lab0", "lab1"]


def test_lock_timeout_from_cli(tmp_path):
    c = Campaign.create(tmp_path / "c", DesignSpace(("Ni", "Fe"), step=0.5), target="eta",
                        maximize=False)
    propose(c, 1)
    before = c.events_path.read_bytes()
    f = tmp_path / "m.csv"
    pd.DataFrame({"id": c.state().in_flight_ids, "value": [1.0]}).to_csv(f, index=False)
    env = {**os.environ, "ACTIVEMIL_LOCK_TIMEOUT": "0.3"}
    with FileLock(c.path / ".lock", "test"):
        p = subprocess.run([sys.executable, "-m", "activemil.cli", "ingest", str(c.path), str(f)],
                           env=env, capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 2
    assert p.stderr.startswith("error: ") and "locked by another activemil command" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert c.events_path.read_bytes() == before


@pytest.mark.slow
def test_kill_writer_many_more_times(tmp_path):
    """>= 100 kill -9 trials of ingest, propose and append: 0 lost or altered events."""
    _run_trials(tmp_path, 150)
