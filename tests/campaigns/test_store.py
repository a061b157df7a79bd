"""Durability primitives and campaign loading: torn tails, corruption, locks, schema versions."""

from __future__ import annotations

import json

import pytest

from activemil.campaigns import SCHEMA_VERSION, Campaign, Event
from activemil.campaigns.events import validate_record
from activemil.campaigns.store import FileLock, atomic_write, scan_log
from activemil.errors import StateError


def _line(i: int, **extra) -> bytes:
    d = {"event_id": f"e{i}", "time": "t", "kind": "submitted", "candidate": "Ni100",
         "batch": None, "round": None, "via": "dft", **extra}
    return (json.dumps(d) + "\n").encode()


def test_scan_clean_log():
    data = _line(1) + _line(2)
    scan = scan_log(data, "log", validate_record)
    assert [r["event_id"] for _, r in scan.records] == ["e1", "e2"]
    assert scan.tail == b"" and scan.good_length == len(data)


@pytest.mark.parametrize(
    "tail",
    [b'{"event_id": "e3", "ti', b"\x00\x00\x00\x00\n", b"\x00\x00", b'{"event_id": "e3"}'],
)
def test_scan_detects_torn_tail(tail):
    data = _line(1) + _line(2) + tail
    scan = scan_log(data, "log", validate_record)
    assert [r["event_id"] for _, r in scan.records] == ["e1", "e2"]
    assert scan.tail == tail and scan.good_length == len(data) - len(tail)
    assert scan.reason


def test_scan_incomplete_transaction_is_torn():
    txn = _line(3, txn="e3", txn_size=3) + _line(4, txn="e3", txn_size=3)
    data = _line(1) + txn
    scan = scan_log(data, "log", validate_record)
    assert [r["event_id"] for _, r in scan.records] == ["e1"]
    assert scan.tail == txn and "transaction" in scan.reason
    complete = data + _line(5, txn="e3", txn_size=3)
    assert len(scan_log(complete, "log", validate_record).records) == 4


def test_scan_corrupt_middle_line_raises():
    data = _line(1) + b"garbage\n" + _line(2)
    with pytest.raises(StateError, match="line 2 is corrupt"):
        scan_log(data, "log", validate_record)


def test_scan_keeps_trailing_blank_lines():
    data = _line(1) + b"\n\n"
    scan = scan_log(data, "log", validate_record)
    assert scan.tail == b"" and len(scan.records) == 1


def test_torn_line_is_set_aside_and_reported(camp):
    camp.append([Event.new("submitted", "Ni100", None, None, via="dft")])
    good = camp.events_path.read_bytes()
    torn = b'{"event_id": "ev-x", "time": "2025-01-01T00:00:00Z", "kind": "meas'
    with open(camp.events_path, "ab") as f:
        f.write(torn)
    reopened = Campaign.open(camp.path)
    events = reopened.events()  # reading ignores the tail and reports it, never writes
    assert len(events) == 1
    assert camp.events_path.read_bytes() == good + torn
    assert reopened.notices and "interrupted write" in reopened.notices[0]
    # the next write sets the tail aside, then appends on a fresh line
    reopened.append([Event.new("submitted", "Fe100", None, None, via="dft")])
    asides = list(camp.path.glob("events.torn-*.jsonl"))
    assert len(asides) == 1 and asides[0].read_bytes() == torn
    assert [e.candidate for e in Campaign.open(camp.path).events()] == ["Ni100", "Fe100"]


def test_append_sets_aside_torn_tail_first(camp):
    with open(camp.events_path, "ab") as f:
        f.write(b'{"event_id": "half')
    camp.append([Event.new("submitted", "Ni100", None, None, via="synthesis")])
    assert [e.candidate for e in camp.events()] == ["Ni100"]
    assert len(list(camp.path.glob("events.torn-*.jsonl"))) == 1


def test_newer_schema_is_refused(camp):
    cfg = json.loads((camp.path / "campaign.json").read_text())
    cfg["schema_version"] = SCHEMA_VERSION + 1
    (camp.path / "campaign.json").write_text(json.dumps(cfg))
    with pytest.raises(StateError, match="newer activemil"):
        Campaign.open(camp.path)


@pytest.mark.parametrize("content", ["{not json", "[]", '{"schema_version": "x"}'])
def test_broken_config_is_refused(camp, content):
    (camp.path / "campaign.json").write_text(content)
    with pytest.raises(StateError):
        Campaign.open(camp.path)


def test_missing_log_and_missing_dir(camp, tmp_path):
    camp.events_path.unlink()
    with pytest.raises(StateError, match="events.jsonl is missing"):
        Campaign.open(camp.path)
    with pytest.raises(StateError, match="not a campaign directory"):
        Campaign.open(tmp_path / "nope")


def test_duplicate_event_id_is_refused(camp):
    ev = Event.new("submitted", "Ni100", None, None, via="dft")
    camp.append([ev])
    with open(camp.events_path, "ab") as f:
        f.write(ev.to_line())
    with pytest.raises(StateError, match="repeats event id"):
        camp.events()


def test_init_refuses_existing_campaign_and_nonempty_dir(camp, make_campaign, tmp_path):
    with pytest.raises(StateError, match="already holds a campaign"):
        make_campaign(camp.path)
    other = tmp_path / "busy"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(StateError, match="not empty"):
        make_campaign(other)


def test_interrupted_init_can_be_redone(camp, make_campaign):
    (camp.path / "campaign.json").unlink()
    with pytest.raises(StateError, match="interrupted"):
        Campaign.open(camp.path)
    make_campaign(camp.path)
    Campaign.open(camp.path)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "f.json"
    atomic_write(p, b"one")
    atomic_write(p, b"two")
    assert p.read_bytes() == b"two"
    assert [q.name for q in tmp_path.iterdir()] == ["f.json"]


def test_lock_timeout_message(camp, monkeypatch):
    monkeypatch.setenv("ACTIVEMIL_LOCK_TIMEOUT", "0.2")
    other = Campaign.open(camp.path)
    with FileLock(camp.path / ".lock", "holder"):
        with pytest.raises(StateError, match=r"locked by another activemil command \(pid"):
            other.append([Event.new("submitted", "Ni100", None, None, via="dft")])
    assert camp.events_path.read_bytes() == b""
    with camp.locked(), camp.locked():  # re-entrant within one object
        camp.append([Event.new("submitted", "Ni100", None, None, via="dft")])
    assert len(camp.events()) == 1


def test_gitignore_excludes_derived_and_lock(camp):
    text = (camp.path / ".gitignore").read_text()
    assert "derived/" in text and ".lock" in text
