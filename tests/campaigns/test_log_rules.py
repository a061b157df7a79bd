"""Issue #11 regressions for the log and the lock (defects 1, 4, 5, 6, 11, 12-BOM): committed
history is never moved aside, batch ids are never reused, sheets are never overwritten."""

from __future__ import annotations

import json
import os
import stat

import pandas as pd
import pytest
from typer.testing import CliRunner

from activemil.campaigns import Campaign, Event, ingest, propose
from activemil.campaigns.store import FileLock
from activemil.cli.app import app
from activemil.errors import StateError


def _torn_files(c: Campaign) -> list:
    return list(c.path.glob("events.torn-*"))


def _sheet(c: Campaign, tmp_path, values: dict[str, float]):
    f = tmp_path / "m.csv"
    pd.DataFrame({"id": list(values), "value": list(values.values())}).to_csv(f, index=False)
    return f


def test_last_line_without_newline_is_kept(proposed):
    data = proposed.events_path.read_bytes()
    proposed.events_path.write_bytes(data.rstrip(b"\n"))
    c = Campaign.open(proposed.path)
    assert len(c.events()) == 6 and not c.notices
    c.abandon([c.state().in_flight_ids[0]], "test")
    assert len(Campaign.open(proposed.path).events()) == 7 and not _torn_files(c)


def test_corrupt_complete_last_line_is_refused_and_nothing_moved(proposed, tmp_path):
    lines = proposed.events_path.read_bytes().splitlines(keepends=True)
    lines[-1] = lines[-1].replace(b'"kind": "proposed"', b'"kind": "proposd"')
    proposed.events_path.write_bytes(b"".join(lines))
    before = proposed.events_path.read_bytes()
    c = Campaign.open(proposed.path)
    with pytest.raises(StateError, match=r"line 6 is corrupt"):
        c.state()
    f = _sheet(c, tmp_path, {"Ni100": 300.0})
    with pytest.raises(StateError, match="line 6"):
        ingest(c, f)
    assert proposed.events_path.read_bytes() == before and not _torn_files(c)


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda d: b"\xef\xbb\xbf" + d, "byte-order mark"),
        (lambda d: b"[" + b",".join(d.splitlines()) + b"]\n", "JSON array"),
    ],
)
def test_bom_or_json_array_log_is_refused_with_the_right_sentence(proposed, mangle, match):
    proposed.events_path.write_bytes(mangle(proposed.events_path.read_bytes()))
    before = proposed.events_path.read_bytes()
    with pytest.raises(StateError, match=match) as info:
        Campaign.open(proposed.path).append(
            [Event.new("submitted", "Ni100", None, None, via="dft")])
    assert "delete line 1" not in str(info.value) and "delete that line" not in str(info.value)
    assert proposed.events_path.read_bytes() == before and not _torn_files(proposed)


def test_batch_ids_never_reused_after_a_tail_is_set_aside(proposed):
    # the last proposal transaction loses its final line: the batch goes to a torn file
    data = proposed.events_path.read_bytes()
    proposed.events_path.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 1] + b'{"ev')
    c = Campaign.open(proposed.path)
    res = propose(c, 2, seed=0)
    assert _torn_files(c) and res.batch == "b002"
    assert (c.batches_dir / "b001.csv").exists() and res.sheet.name == "b002.csv"


def test_batch_id_skips_existing_sheets(camp):
    camp.batches_dir.mkdir()
    (camp.batches_dir / "b001.csv").write_text("id,value\nNi100,300\n")
    res = propose(camp, 2)
    assert res.batch == "b002"
    assert (camp.batches_dir / "b001.csv").read_text() == "id,value\nNi100,300\n"


def test_sheet_command_never_replaces_a_filled_sheet(proposed):
    sheet = proposed.batches_dir / "b001.csv"
    filled = sheet.read_text().replace(",pending,", ",measured,", 1)
    sheet.write_text(filled)
    res = CliRunner().invoke(app, ["sheet", str(proposed.path), "b001"])
    assert res.exit_code == 2 and "left untouched" in res.stderr
    assert sheet.read_text() == filled
    out = proposed.path / "fresh.csv"
    assert CliRunner().invoke(app, ["sheet", str(proposed.path), "b001", "-o", str(out)]
                              ).exit_code == 0 and out.exists()


def test_stale_picks_are_refused_under_the_lock(camp, tmp_path):
    """A concurrent ingest measures every composition while propose computes."""
    pool = camp.space.enumerate()
    f = tmp_path / "all.csv"
    pd.DataFrame({"Ni": pool.fractions[:, 0], "Fe": pool.fractions[:, 1],
                  "Co": pool.fractions[:, 2], "value": 300.0}).to_csv(f, index=False)
    other = Campaign.open(camp.path)

    def meanwhile(msg: str) -> None:
        if msg.startswith("Candidate pool"):
            ingest(other, f)

    before_batches = list(camp.batches_dir.glob("*")) if camp.batches_dir.exists() else []
    with pytest.raises(StateError, match="measured, proposed or recorded by another command"):
        propose(camp, 3, say=meanwhile)
    assert not [e for e in Campaign.open(camp.path).events() if e.kind == "proposed"]
    assert (list(camp.batches_dir.glob("*")) if camp.batches_dir.exists() else []
            ) == before_batches


def test_deleting_the_lock_file_cannot_let_two_writers_in(camp):
    a = Campaign.open(camp.path)
    b = Campaign.open(camp.path)
    with a.locked():
        (camp.path / ".lock").unlink()  # a user "cleans up" the lock of a running command
        with b.locked():  # a second command now gets a lock on a new file ...
            b.append([Event.new("submitted", "Ni100", None, None, via="dft")])
        with pytest.raises(StateError, match="deleted or replaced while this command held it"):
            a.append([Event.new("submitted", "Fe100", None, None, via="dft")])
    assert [e.candidate for e in camp.events()] == ["Ni100"]


def test_stale_lock_from_a_dead_pid_is_named(camp):
    (camp.path / ".lock").write_text(json.dumps(
        {"pid": 2 ** 22 + 12345, "since": "2025-01-01T00:00:00Z", "host": os.uname().nodename}))
    c = Campaign.open(camp.path)
    c.append([Event.new("submitted", "Ni100", None, None, via="dft")])
    assert any(f"stale lock from pid {2 ** 22 + 12345}" in n for n in c.notices)


def test_lock_holder_is_reported_on_timeout(camp, monkeypatch):
    monkeypatch.setenv("ACTIVEMIL_LOCK_TIMEOUT", "0.1")
    with FileLock(camp.path / ".lock", "x"):
        with pytest.raises(StateError, match=f"pid {os.getpid()}"):
            Campaign.open(camp.path).append(
                [Event.new("submitted", "Ni100", None, None, via="dft")])


def test_dry_run_with_torn_tail_writes_nothing(proposed, tmp_path):
    with open(proposed.events_path, "ab") as f:
        f.write(b'{"event_id": "ev-x", "kind": "mea')
    before = {p.name: p.read_bytes() for p in proposed.path.iterdir() if p.is_file()}
    ids = proposed.state().in_flight_ids
    res = CliRunner().invoke(app, ["ingest", str(proposed.path),
                                   str(_sheet(proposed, tmp_path, {ids[0]: 300.0})), "--dry-run"])
    assert res.exit_code == 0 and "Nothing was written" in res.stdout
    after = {p.name: p.read_bytes() for p in proposed.path.iterdir() if p.is_file()}
    assert after == before


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_campaign_with_torn_tail_is_readable(proposed):
    with open(proposed.events_path, "ab") as f:
        f.write(b'{"event_id": "ev-x", "kind": "mea')
    mode = proposed.path.stat().st_mode
    os.chmod(proposed.events_path, 0o444)
    os.chmod(proposed.path, stat.S_IREAD | stat.S_IEXEC)
    try:
        res = CliRunner().invoke(app, ["status", str(proposed.path)])
        assert res.exit_code == 0 and "interrupted write" in res.stderr
    finally:
        os.chmod(proposed.path, mode)
        os.chmod(proposed.events_path, 0o644)


def test_read_only_reading_never_opens_for_writing(proposed, monkeypatch):
    """Root-proof variant: reading a torn log must not call any writing primitive."""
    import activemil.campaigns.campaign as cm

    with open(proposed.events_path, "ab") as f:
        f.write(b'{"event_id": "ev-x", "kind": "mea')

    def boom(*a, **k):
        raise AssertionError("a read wrote")

    for name in ("set_aside", "atomic_write", "append_bytes", "write_new"):
        monkeypatch.setattr(cm, name, boom)
    c = Campaign.open(proposed.path)
    assert len(c.state().events) == 6 and c.notices
