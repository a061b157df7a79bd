"""The campaign directory: configuration, the append-only event log and the tables derived
from it (observations, in flight, best so far, rounds, export).

Layout::

    DIR/campaign.json      design space, recipe, encoder, surrogate/acquisition settings, target
    DIR/events.jsonl       append-only event log, the single source of truth
    DIR/candidates.csv     optional candidate list (id + one fraction column per element) that
                           replaces the design-space grid as the pool (e.g. a measured plate)
    DIR/priors/*.csv       byte copies of the prior tables (``init --prior``; never measurements)
    DIR/batches/<b>.csv    lab sheets written by ``propose`` (re-creatable from the log)
    DIR/derived/           features and fitted models; safe to delete
    DIR/.lock              lock file serialising writers
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from activemil.campaigns.config import (
    CONFIG_FILE,
    SCHEMA_VERSION,
    CampaignConfig,
    load_config,
    migrate,
)
from activemil.campaigns.events import VIAS, Event, validate_record
from activemil.campaigns.priors import PRIORS_DIR, PriorTable, load_stored, stored_name
from activemil.campaigns.store import (
    FileLock,
    LogScan,
    append_bytes,
    atomic_write,
    create_empty,
    fsync_dir,
    scan_log,
    set_aside,
    utc_now,
    write_new,
)
from activemil.campaigns.units import canonical_unit
from activemil.errors import InputError, StateError
from activemil.space import CandidatePool, DesignSpace, candidate_id, parse_candidate_id

EVENTS_FILE = "events.jsonl"
LOCK_FILE = ".lock"
CANDIDATES_FILE = "candidates.csv"
DERIVED_DIR = "derived"
BATCHES_DIR = "batches"
IN_FLIGHT = ("proposed", "submitted")
_BATCH_NUMBER = re.compile(r"^b(\d+)")
SHEET_COLUMNS = ("value", "std", "unit", "status", "source", "note")


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()


@dataclass
class Measurement:
    """A ``measured`` event and its effective value after corrections (``None`` = withdrawn)."""

    event: Event
    value: float | None
    std: float | None
    corrected_by: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return str(self.event.get("source") or "")


@dataclass
class CandidateState:
    """Everything the log says about one candidate."""

    id: str
    fractions: np.ndarray
    batch: str | None = None
    round: int | None = None
    proposal: Event | None = None
    submissions: list[Event] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    failures: list[Event] = field(default_factory=list)
    abandoned: Event | None = None
    answered_by: list[str] = field(default_factory=list)
    linked_to: str | None = None
    last: str = ""
    last_time: str = ""

    @property
    def effective(self) -> list[Measurement]:
        return [m for m in self.measurements if m.value is not None]

    @property
    def status(self) -> str:
        """``proposed | submitted | measured | failed | abandoned | answered``."""
        if self.effective:
            return "measured"
        if self.last == "measured":  # every measurement withdrawn by a correction
            return "failed"
        return self.last or "proposed"

    @property
    def via(self) -> str:
        return ",".join(dict.fromkeys(str(e.get("via")) for e in self.submissions))


@dataclass
class CampaignState:
    """The log folded into per-candidate records (see :meth:`Campaign.state`)."""

    events: list[Event]
    candidates: dict[str, CandidateState]
    batches: dict[str, dict]
    measurements: dict[str, Measurement]

    @property
    def current_round(self) -> int:
        return max((b["round"] for b in self.batches.values()), default=0)

    def ids_with_status(self, *statuses: str) -> list[str]:
        return [c.id for c in self.candidates.values() if c.status in statuses]

    @property
    def in_flight_ids(self) -> list[str]:
        return self.ids_with_status(*IN_FLIGHT)

    @property
    def closed_ids(self) -> list[str]:
        """Ids never to propose again: measured, failed, abandoned or answered."""
        return [c.id for c in self.candidates.values() if c.status not in IN_FLIGHT]


def fold(events: Sequence[Event], elements: Sequence[str]) -> CampaignState:
    """Replay ``events`` into a :class:`CampaignState`."""
    cands: dict[str, CandidateState] = {}
    batches: dict[str, dict] = {}
    meas: dict[str, Measurement] = {}

    def get(cid: str, ev: Event) -> CandidateState:
        if cid not in cands:
            comp = ev.get("composition") if ev.candidate == cid else None
            if isinstance(comp, Mapping):
                fr = np.array([float(comp.get(e, 0.0)) for e in elements])
            else:
                try:
                    fr = parse_candidate_id(cid, elements)
                except InputError:
                    raise StateError(
                        f"Event {ev.event_id} names candidate {cid!r}, which is not a "
                        f"composition over {','.join(elements)}; fix that line of "
                        f"{EVENTS_FILE}."
                    ) from None
            cands[cid] = CandidateState(id=cid, fractions=fr)
        return cands[cid]

    for ev in events:
        c = get(ev.candidate, ev)
        c.last_time = ev.time
        if c.batch is None and ev.batch is not None:
            c.batch, c.round = ev.batch, ev.round
        if c.round is None and ev.round is not None:
            c.round = ev.round
        if ev.kind == "proposed":
            c.proposal, c.last = ev, "proposed"
            c.batch, c.round = ev.batch, ev.round
            b = batches.setdefault(
                ev.batch or "?",
                {"round": ev.round or 0, "time": ev.time, "policy": ev.get("policy"),
                 "mode": ev.get("mode"), "posterior": ev.get("posterior") or {}, "ids": []},
            )
            b["ids"].append(ev.candidate)
        elif ev.kind == "submitted":
            c.submissions.append(ev)
            if c.last in ("proposed", "submitted", ""):
                c.last = "submitted"
        elif ev.kind == "measured":
            m = Measurement(ev, float(ev.get("value")), _opt_float(ev.get("std")))
            c.measurements.append(m)
            meas[ev.event_id] = m
            c.last = "measured"
            c.linked_to = ev.get("linked_to") or c.linked_to
            answers = ev.get("answers")
            if answers and answers != c.id:
                target = get(answers, ev)
                target.answered_by.append(c.id)
                if target.last in ("proposed", "submitted", ""):
                    target.last = "answered"
        elif ev.kind == "failed":
            c.failures.append(ev)
            c.last = "failed"
        elif ev.kind == "abandoned":
            c.abandoned, c.last = ev, "abandoned"
        elif ev.kind == "corrected":
            m = meas.get(ev.get("corrects"))
            if m is None or m.event.candidate != ev.candidate:
                raise StateError(
                    f"Event {ev.event_id} corrects {ev.get('corrects')!r}, which is not an "
                    f"earlier measurement of {ev.candidate}; fix that line of {EVENTS_FILE}."
                )
            if ev.get("status") == "failed":
                m.value, m.std = None, None
            else:
                m.value, m.std = float(ev.get("value")), _opt_float(ev.get("std"))
            m.corrected_by.append(ev.event_id)
    return CampaignState(list(events), cands, batches, meas)


def _opt_float(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class Campaign:
    """A campaign directory. Open with :meth:`open`, create with :meth:`create`.

    Reading never needs the lock and never writes; every write takes it (:meth:`locked`,
    re-entrant). ``notices`` collects one-line reports (e.g. a torn log tail that was set aside).
    ``cfg`` is the typed, validated ``campaign.json``; ``config`` is its plain JSON form.
    """

    def __init__(self, path: Path, config: CampaignConfig | Mapping) -> None:
        self.path = Path(path)
        self.cfg = config if isinstance(config, CampaignConfig) else load_config(dict(config))
        self.config: dict = self.cfg.to_json()
        self.space = DesignSpace.from_dict(self.config["space"])
        self.notices: list[str] = []
        self._noticed: set[str] = set()
        self._migrated_from: int | None = None
        self.committed = 0  # events this object appended (for the Ctrl-C message)
        self._lock = FileLock(self.path / LOCK_FILE, f"Campaign {self.path}")

    def notice(self, message: str) -> None:
        """Add a one-line report for the user (once per campaign object)."""
        if message not in self._noticed:
            self._noticed.add(message)
            self.notices.append(message)

    # ------------------------------------------------------------------ create / open
    @classmethod
    def create(
        cls,
        path: str | Path,
        space: DesignSpace,
        *,
        target: str,
        maximize: bool,
        unit: str = "",
        recipe: str = "fcc111",
        recipe_settings: Mapping | None = None,
        encoder: str = "zones",
        encoder_settings: Mapping | None = None,
        featurize: Mapping | None = None,
        surrogate: Mapping | None = None,
        acquisition: Mapping | None = None,
        candidates: CandidatePool | None = None,
        priors: Sequence[PriorTable] = (),
    ) -> Campaign:
        """Create a campaign directory (new or empty) and return it.

        ``candidates`` (a pool over ``space.elements``) is written to ``candidates.csv`` and
        becomes the campaign's pool instead of the enumerated grid (see :meth:`pool`).
        ``priors`` (validated tables, :func:`~activemil.campaigns.priors.read_priors`) are copied
        byte for byte under ``priors/`` and recorded with their hashes (see :meth:`priors`).
        ``campaign.json`` is written last, so a directory interrupted during creation has no
        config and can simply be initialised again.
        """
        from activemil import __version__

        path = Path(path)
        if not target or not str(target).strip():
            raise InputError("The target needs a name; pass e.g. --target overpotential.")
        if path.exists():
            if not path.is_dir():
                raise StateError(f"{path} exists and is a file; choose a new directory name.")
            if (path / CONFIG_FILE).exists():
                raise StateError(
                    f"{path} already holds a campaign; open it, or choose a new directory."
                )
            leftovers = set(os.listdir(path)) - {EVENTS_FILE, ".gitignore", LOCK_FILE,
                                                 CANDIDATES_FILE, PRIORS_DIR}
            events = path / EVENTS_FILE
            if leftovers or (events.exists() and events.stat().st_size > 0):
                raise StateError(
                    f"{path} is not empty; initialise the campaign in a new or empty directory."
                )
        if candidates is not None and tuple(candidates.elements) != tuple(space.elements):
            raise InputError(
                f"The candidate list has elements {','.join(candidates.elements)} but the design "
                f"space has {','.join(space.elements)}; use the same elements in the same order."
            )
        raw = {
            "schema_version": SCHEMA_VERSION,
            "name": path.resolve().name,
            "created": utc_now(),
            "activemil_version": __version__,
            "space": space.to_dict(),
            "target": {
                "name": str(target).strip(),
                "direction": "maximize" if maximize else "minimize",
                "unit": canonical_unit(unit) or str(unit).strip() if unit else "",
            },
            "structure": {"recipe": recipe, "settings": dict(recipe_settings or {})},
            "encoder": {"name": encoder, "settings": dict(encoder_settings or {})},
            "featurize": dict(featurize or {}),
            "surrogate": dict(surrogate or {}),
            "acquisition": dict(acquisition or {}),
            "priors": [t.record(stored_name(i, t)) for i, t in enumerate(priors)],
        }  # every other default comes from activemil.campaigns.config
        config = load_config(raw, "The campaign settings", error=InputError)
        if not path.exists():
            path.mkdir(parents=True)
            fsync_dir(path.parent)
        with FileLock(path / LOCK_FILE, f"Campaign {path}"):
            if not (path / EVENTS_FILE).exists():
                create_empty(path / EVENTS_FILE)
            atomic_write(path / ".gitignore", f"{DERIVED_DIR}/\n{LOCK_FILE}\n".encode())
            if candidates is not None:
                atomic_write(path / CANDIDATES_FILE,
                             candidates.to_frame().to_csv(index=False).encode("utf-8"))
            if priors:
                (path / PRIORS_DIR).mkdir(exist_ok=True)
                for i, t in enumerate(priors):
                    atomic_write(path / stored_name(i, t), t.content)
            atomic_write(path / CONFIG_FILE, _json_bytes(config.to_json()))
        return cls(path, config)

    @classmethod
    def open(cls, path: str | Path) -> Campaign:
        """Open an existing campaign, refusing newer schema versions and broken configs."""
        path = Path(path)
        if not path.is_dir():
            raise StateError(
                f"{path} is not a campaign directory; create one with `activemil init {path} ...`."
            )
        cfg_path = path / CONFIG_FILE
        if not cfg_path.exists():
            hint = (
                "initialisation was interrupted; run `activemil init` on it again"
                if (path / EVENTS_FILE).exists() and (path / EVENTS_FILE).stat().st_size == 0
                else f"restore {CONFIG_FILE} from your backup or git history"
            )
            raise StateError(f"{path} has no {CONFIG_FILE}; {hint}.")
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise StateError(
                f"{cfg_path} is not valid JSON ({exc}); fix it or restore it from git."
            ) from None
        if not isinstance(config, dict):
            raise StateError(f"{cfg_path} does not hold a JSON object; restore it from git.")
        version = config.get("schema_version")
        if not isinstance(version, int) or version < 1:
            raise StateError(
                f"{cfg_path} has no valid schema_version; restore it from git history."
            )
        if version > SCHEMA_VERSION:
            from activemil import __version__

            raise StateError(
                f"{path} was written by a newer activemil (campaign schema {version}, this "
                f"activemil {__version__} reads up to {SCHEMA_VERSION}); upgrade activemil "
                "(pip install -U activemil) before touching it."
            )
        try:
            migrated, original = migrate(config)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(
                f"{cfg_path} (campaign schema {version}) cannot be upgraded to schema "
                f"{SCHEMA_VERSION} ({exc!r}); restore it from git history."
            ) from None
        camp = cls(path, load_config(migrated, str(cfg_path)))
        if original < SCHEMA_VERSION:
            camp._migrated_from = original
            camp.notice(
                f"{CONFIG_FILE} uses campaign schema {original}; it was read as schema "
                f"{SCHEMA_VERSION} and is upgraded on the next command that records something "
                f"(the old file is kept as campaign.schema{original}.json)."
            )
        if not (path / EVENTS_FILE).exists():
            raise StateError(
                f"{path / EVENTS_FILE} is missing; restore it from your backup or git history "
                "(it is the campaign's record)."
            )
        return camp

    # ------------------------------------------------------------------ properties
    @property
    def events_path(self) -> Path:
        return self.path / EVENTS_FILE

    @property
    def derived_dir(self) -> Path:
        return self.path / DERIVED_DIR

    @property
    def batches_dir(self) -> Path:
        return self.path / BATCHES_DIR

    @property
    def elements(self) -> tuple[str, ...]:
        return self.space.elements

    @property
    def target(self) -> str:
        return str(self.config["target"]["name"])

    @property
    def unit(self) -> str:
        return str(self.config["target"].get("unit") or "")

    @property
    def maximize(self) -> bool:
        return self.cfg.target.direction == "maximize"

    @property
    def min_train(self) -> int:
        return self.cfg.surrogate.min_train

    def setting(self, section: str, key: str, default: Any = None) -> Any:
        """``campaign.json`` value ``section.key`` (validated, defaults filled in), else
        ``default`` for a key the schema does not know."""
        sec = self.config.get(section)
        return sec.get(key, default) if isinstance(sec, Mapping) else default

    # ------------------------------------------------------------------ pool
    def pool(self) -> CandidatePool:
        """The candidates ``[N]``: the rows of ``candidates.csv`` when the campaign has one (ids
        and fractions as written), else ``self.space.enumerate()``. Cached per object."""
        cached = getattr(self, "_pool", None)
        if cached is not None:
            return cached
        path = self.path / CANDIDATES_FILE
        if not path.exists():
            from activemil.progress import progress_enabled

            self._pool = self.space.enumerate(progress=progress_enabled())
            return self._pool
        df = pd.read_csv(path, dtype={"id": str})
        missing = [c for c in ("id", *self.elements) if c not in df.columns]
        if missing:
            raise StateError(
                f"{path} lacks the column(s) {', '.join(missing)}; restore it from git or "
                "recreate the campaign with the candidate list."
            )
        try:
            pool = CandidatePool(self.elements, df[list(self.elements)].to_numpy(np.float64),
                                 tuple(df["id"]))
        except InputError as exc:
            raise StateError(f"{path} is not a valid candidate list ({exc})") from None
        self._pool = pool
        return pool

    # ------------------------------------------------------------------ priors
    def priors(self) -> list[PriorTable]:
        """The campaign's prior tables, each checked against its recorded SHA-256."""
        return [load_stored(self.path, p.model_dump()) for p in self.cfg.priors]

    def pool_size(self) -> int:
        """Candidates in the pool: the rows of ``candidates.csv``, else the grid's count (the
        grid is counted, not enumerated)."""
        if (self.path / CANDIDATES_FILE).exists():
            return len(self.pool())
        return self.space.count()

    # ------------------------------------------------------------------ log
    @contextmanager
    def locked(self) -> Iterator[Campaign]:
        """Hold the campaign's writer lock (re-entrant within this object)."""
        with self._lock:
            yield self

    def _scan(self) -> LogScan:
        try:
            data = self.events_path.read_bytes()
        except FileNotFoundError:
            raise StateError(
                f"{self.events_path} is missing; restore it from your backup or git history."
            ) from None
        return scan_log(data, str(self.events_path), validate_record)

    def events(self) -> list[Event]:
        """All committed events in log order; never writes.

        A torn tail (bytes of an interrupted write) is ignored and reported; the next command
        that records something moves it aside first (:meth:`append`).
        """
        scan = self._scan()
        if scan.tail and not self._lock.held:
            self.notice(
                f"{EVENTS_FILE} ends with {len(scan.tail)} bytes of an interrupted write "
                f"({scan.reason}); they are ignored, and the next command that records "
                "something moves them to events.torn-<time>.jsonl."
            )
        return self._events_of(scan)

    def _events_of(self, scan: LogScan) -> list[Event]:
        seen: set[str] = set()
        out = []
        for line, rec in scan.records:
            if rec["event_id"] in seen:
                raise StateError(
                    f"{self.events_path} line {line} repeats event id {rec['event_id']}; remove "
                    "the duplicated line."
                )
            seen.add(rec["event_id"])
            out.append(Event.from_dict(rec))
        return out

    def append(self, events: Sequence[Event]) -> None:
        """Durably append ``events`` as one transaction (all lines in one fsynced write)."""
        if not events:
            return
        with self.locked():
            self._lock.verify()
            scan = self._repair()
            if len(events) == 1:
                data = events[0].to_line()
            else:
                txn = events[0].event_id
                data = b"".join(e.to_line(txn, len(events)) for e in events)
            if scan.needs_newline:  # a hand-edited last line lost its newline: keep it
                data = b"\n" + data
            self._lock.verify()
            append_bytes(self.events_path, data)
            self.committed += len(events)
            self._upgrade_config()

    def _repair(self) -> LogScan:
        """Under the lock: move a torn tail aside (reported) and return the clean scan."""
        assert self._lock.held
        for msg in self._lock.notices:
            self.notice(msg)
        self._lock.notices.clear()
        scan = self._scan()
        if scan.tail:
            self._lock.verify()
            aside = set_aside(self.events_path, scan)
            self.notice(
                f"{EVENTS_FILE} ended with {len(scan.tail)} bytes from an interrupted write "
                f"({scan.reason}); they were moved to {aside.name}, inspect that file and "
                "re-run the command that was interrupted if needed."
            )
            scan = self._scan()
        return scan

    def _upgrade_config(self) -> None:
        """Under the lock: write a migrated ``campaign.json`` back, keeping the old file."""
        if self._migrated_from is None:
            return
        cfg_path = self.path / CONFIG_FILE
        old = cfg_path.read_bytes()
        keep = self.path / f"campaign.schema{self._migrated_from}.json"
        if not keep.exists():
            write_new(keep, old)
        atomic_write(cfg_path, _json_bytes(self.config))
        self._migrated_from = None

    def next_batch(self, state: CampaignState) -> tuple[str, int]:
        """The next batch id and round, never reusing a batch id seen anywhere: in the log, in
        set-aside ``events.torn-*.jsonl`` files or as a ``batches/*.csv`` sheet."""
        numbers = [state.current_round]
        for bid in state.batches:
            if m := _BATCH_NUMBER.match(bid):
                numbers.append(int(m.group(1)))
        for torn in self.path.glob("events.torn-*.jsonl"):
            try:
                text = torn.read_bytes().decode("utf-8", "replace")
            except OSError:
                continue
            numbers += [int(n) for n in re.findall(r'"batch":\s*"b(\d+)', text)]
        if self.batches_dir.is_dir():
            for sheet in self.batches_dir.iterdir():
                if m := _BATCH_NUMBER.match(sheet.name):
                    numbers.append(int(m.group(1)))
        rnd = max(numbers) + 1
        return f"b{rnd:03d}", rnd

    def state(self) -> CampaignState:
        return fold(self.events(), self.elements)

    # ------------------------------------------------------------------ lifecycle commands
    def resolve_ids(self, tokens: Iterable[str], state: CampaignState | None = None) -> list[str]:
        """Expand candidate ids and batch ids (``b002`` = its in-flight candidates)."""
        state = state or self.state()
        out: list[str] = []
        unknown = []
        for raw in tokens:
            for tok in str(raw).replace(",", " ").split():
                if tok in state.batches:
                    ids = [i for i in state.batches[tok]["ids"]
                           if state.candidates[i].status in IN_FLIGHT]
                    out.extend(ids)
                elif tok in state.candidates:
                    out.append(tok)
                else:
                    unknown.append(tok)
        if unknown:
            raise InputError(
                f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} neither a proposed "
                "candidate nor a batch of this campaign; see `activemil status` for the ids."
            )
        if not out:
            raise InputError("No candidates given; pass candidate ids or a batch id such as b001.")
        return list(dict.fromkeys(out))

    def _lifecycle(self, tokens: Iterable[str], kind: str, **data: Any) -> list[Event]:
        with self.locked():
            state = self.state()
            ids = self.resolve_ids(tokens, state)
            bad = [f"{i} ({state.candidates[i].status})" for i in ids
                   if state.candidates[i].status not in IN_FLIGHT]
            if bad:
                raise InputError(
                    f"Only in-flight candidates can be {kind}, but {', '.join(bad)} "
                    f"{'is' if len(bad) == 1 else 'are'} not in flight; leave them out."
                )
            events = [
                Event.new(kind, i, state.candidates[i].batch, state.candidates[i].round, **data)
                for i in ids
            ]
            self.append(events)
            return events

    def submit(self, ids: Iterable[str], via: str, note: str = "") -> list[Event]:
        """Record that in-flight candidates were sent to DFT or synthesis."""
        via = str(via).strip().lower()
        if via not in VIAS:
            raise InputError(f"--via must be one of {', '.join(VIAS)}, not {via!r}.")
        return self._lifecycle(ids, "submitted", via=via, note=note)

    def abandon(self, ids: Iterable[str], reason: str) -> list[Event]:
        """Record that in-flight candidates will not be measured (they leave the queue)."""
        if not str(reason).strip():
            raise InputError("Say why the candidates are abandoned: pass --reason '...'.")
        return self._lifecycle(ids, "abandoned", reason=str(reason).strip())

    # ------------------------------------------------------------------ derived tables
    def observations(self, state: CampaignState | None = None) -> pd.DataFrame:
        """One row per measured point: mean of its effective values (replicates averaged).

        Columns: ``id``, one per element, ``value``, ``std`` (replicate std if n > 1, else the
        reported std), ``n``, ``unit``, ``sources``, ``batch``, ``round``, ``on_grid``,
        ``linked_to``, ``time`` (latest measurement).
        """
        state = state or self.state()
        rows = []
        for c in state.candidates.values():
            eff = c.effective
            if not eff:
                continue
            vals = np.array([m.value for m in eff], dtype=float)
            std = float(vals.std(ddof=1)) if len(vals) > 1 else eff[0].std
            rows.append({
                "id": c.id,
                **{e: float(x) for e, x in zip(self.elements, c.fractions)},
                "value": float(vals.mean()),
                "std": np.nan if std is None else std,
                "n": len(vals),
                "unit": self.unit,
                "sources": ",".join(dict.fromkeys(m.source for m in eff if m.source)),
                "batch": c.batch,
                "round": c.round,
                "on_grid": bool(self.space.contains(c.fractions)),
                "linked_to": c.linked_to,
                "time": max(m.event.time for m in eff),
            })
        cols = ["id", *self.elements, "value", "std", "n", "unit", "sources", "batch", "round",
                "on_grid", "linked_to", "time"]
        return pd.DataFrame(rows, columns=cols)

    def in_flight(self, state: CampaignState | None = None) -> pd.DataFrame:
        """Candidates proposed or submitted and not yet measured, failed or abandoned."""
        state = state or self.state()
        rows = []
        for cid in state.in_flight_ids:
            c = state.candidates[cid]
            p = c.proposal
            rows.append({
                "id": cid, "status": c.status, "via": c.via, "batch": c.batch,
                "round": c.round, "proposed": p.time if p else None,
                "median": p.get("median") if p else None,
                "lo": p.get("lo") if p else None, "hi": p.get("hi") if p else None,
            })
        cols = ["id", "status", "via", "batch", "round", "proposed", "median", "lo", "hi"]
        return pd.DataFrame(rows, columns=cols)

    def best(self, state: CampaignState | None = None) -> dict | None:
        """The best observation so far (by direction) with its uncertainty, or ``None``."""
        state = state or self.state()
        obs = self.observations(state)
        if obs.empty:
            return None
        i = int(obs["value"].idxmax() if self.maximize else obs["value"].idxmin())
        row = obs.loc[i].to_dict()
        p = state.candidates[row["id"]].proposal
        row["predicted"] = (
            {"median": p.get("median"), "lo": p.get("lo"), "hi": p.get("hi"),
             "alpha": p.get("alpha")}
            if p is not None and p.get("median") is not None else None
        )
        return row

    def rounds(self, state: CampaignState | None = None) -> pd.DataFrame:
        """One row per proposed batch with counts by current status and the batch's best.

        ``model`` is the posterior the model choice picked for the batch (``gp``, ``mil``,
        ``transfer``; empty for space-filling and random batches), ``rule`` the choice rule
        (empty for proposals recorded before rules were named: those chose by ``cv_mse``),
        and ``cv_mse``, ``cv_crps``, ``cv_spearman`` every variant's cross-validated scores,
        as recorded in the ``proposed`` events."""
        state = state or self.state()
        rows = []
        for bid, b in state.batches.items():
            cs = [state.candidates[i] for i in b["ids"]]
            statuses = [c.status for c in cs]
            vals = [np.mean([m.value for m in c.effective]) for c in cs if c.effective]
            best = (max(vals) if self.maximize else min(vals)) if vals else np.nan
            rows.append({
                "batch": bid, "round": b["round"], "proposed": b["time"],
                "policy": b["policy"], "mode": b["mode"], "n": len(cs),
                "in_flight": sum(s in IN_FLIGHT for s in statuses),
                "measured": statuses.count("measured") + statuses.count("answered"),
                "failed": statuses.count("failed"), "abandoned": statuses.count("abandoned"),
                "best": best,
                "model": str(b.get("posterior", {}).get("model") or ""),
                "rule": str(b.get("posterior", {}).get("rule") or ""),
                "cv_mse": dict(b.get("posterior", {}).get("cv_mse") or {}),
                "cv_crps": dict(b.get("posterior", {}).get("cv_crps") or {}),
                "cv_spearman": dict(b.get("posterior", {}).get("cv_spearman") or {}),
            })
        cols = ["batch", "round", "proposed", "policy", "mode", "n", "in_flight", "measured",
                "failed", "abandoned", "best", "model", "rule", "cv_mse", "cv_crps",
                "cv_spearman"]
        return pd.DataFrame(rows, columns=cols)

    def next_step(self, state: CampaignState | None = None) -> str:
        """One sentence telling the user what to do next."""
        state = state or self.state()
        d = self.path
        n_obs = len(self.observations(state))
        flying = state.in_flight_ids
        if not state.batches and n_obs == 0:
            return f"Propose a first batch: activemil propose {d} --budget 8"
        if flying:
            batches = sorted({state.candidates[i].batch or "?" for i in flying})
            sheets = " ".join(f"{d}/{BATCHES_DIR}/{b}.csv" for b in batches)
            return (
                f"Measure the {len(flying)} in-flight candidate(s), fill in the sheet(s) "
                f"{sheets}, then: activemil ingest {d} <sheet> --dry-run"
            )
        if n_obs < self.min_train:
            return (
                f"Propose the next batch (space-filling until {self.min_train} measurements, "
                f"{n_obs} so far): activemil propose {d} --budget 8"
            )
        return f"Propose the next batch with the surrogate: activemil propose {d} --budget 8"

    def export_events(self, state: CampaignState | None = None) -> pd.DataFrame:
        """Tidy table, one row per event; composition as element columns, quantiles as q_*."""
        state = state or self.state()
        rows = []
        for ev in state.events:
            d = ev.to_dict()
            comp = d.pop("composition", None)
            c = state.candidates.get(ev.candidate)
            if isinstance(comp, Mapping):
                fr = {e: float(comp.get(e, 0.0)) for e in self.elements}
            else:
                fr = {e: float(x) for e, x in zip(self.elements, c.fractions)} if c else {}
            quantiles = d.pop("quantiles", None)
            if isinstance(quantiles, Mapping):
                d.update({f"q_{k}": v for k, v in quantiles.items()})
            for k, v in list(d.items()):
                if isinstance(v, dict | list):
                    d[k] = json.dumps(v, ensure_ascii=False)
            d.update(fr)
            rows.append(d)
        lead = ["event_id", "time", "kind", "candidate", "batch", "round", *self.elements,
                "value", "std", "unit"]
        df = pd.DataFrame(rows)
        for col in lead:
            if col not in df.columns:
                df[col] = pd.Series(dtype=object)
        df = df[lead + [c for c in df.columns if c not in lead]]
        return df.convert_dtypes(convert_string=False, convert_floating=False)

    # ------------------------------------------------------------------ lab sheets
    def batch_sheet(self, batch: str, state: CampaignState | None = None) -> pd.DataFrame:
        """The fill-in sheet for ``batch``: id, element fractions, value, std, unit, status
        (``pending``), source, note; one row per candidate of the batch."""
        state = state or self.state()
        if batch not in state.batches:
            known = ", ".join(state.batches) or "none yet"
            raise InputError(f"No batch {batch!r} in this campaign (batches: {known}).")
        rows = []
        for cid in state.batches[batch]["ids"]:
            c = state.candidates[cid]
            rows.append({
                "id": cid,
                **{e: round(float(x), 6) for e, x in zip(self.elements, c.fractions)},
                "value": "", "std": "", "unit": self.unit, "status": "pending",
                "source": "", "note": "",
            })
        return pd.DataFrame(rows, columns=["id", *self.elements, *SHEET_COLUMNS])

    def write_batch_sheet(self, batch: str, path: Path | None = None) -> Path:
        """Write :meth:`batch_sheet` as CSV to ``batches/<batch>.csv`` or ``path``.

        Never replaces a file: an existing identical sheet is left as is, and an existing file
        that differs (a sheet the lab filled in) is refused with :class:`StateError`.
        """
        sheet = self.batch_sheet(batch)
        if path is None:
            self.batches_dir.mkdir(exist_ok=True)
            path = self.batches_dir / f"{batch}.csv"
        path = Path(path)
        data = sheet.to_csv(index=False).encode("utf-8")
        try:
            write_new(path, data)
        except FileExistsError:
            if path.read_bytes() != data:
                raise StateError(
                    f"{path} already exists and differs from a fresh sheet of {batch} (the lab "
                    "may have filled it in), so it was left untouched; ingest it, or write a "
                    f"fresh copy elsewhere with `activemil sheet {self.path} {batch} -o "
                    "NEW.csv`."
                ) from None
        return path

    def composition_id(self, fractions: np.ndarray) -> str:
        return candidate_id(self.elements, fractions)
