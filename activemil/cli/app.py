"""The ``activemil`` command line: a thin typer layer over :mod:`activemil.campaigns`.

Heavy imports (pandas, the campaign layer, models) happen inside the commands so that
``activemil --help`` and ``activemil --version`` start instantly. Any
:class:`~activemil.errors.ActiveMILError` becomes ``error: <one sentence>`` on stderr and exit
code 2, never a traceback.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from activemil import __version__
from activemil.errors import ActiveMILError, InputError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
ROWS_SHOWN = 50
_OPENED: list[Any] = []  # campaigns opened by this command (for the Ctrl-C message)


def _report_error(exc: BaseException) -> None:
    problems = getattr(exc, "problems", None)
    if problems:
        sys.stderr.write(f"error: {exc.headline}:\n")  # type: ignore[attr-defined]
        for p in problems:
            sys.stderr.write(f"  - {p}\n")
    else:
        sys.stderr.write(f"error: {exc}\n")
    sys.stderr.flush()


class _Group(TyperGroup):
    """Turns user-facing errors into one ``error: ...`` line and exit code 2."""

    def invoke(self, ctx: typer.Context) -> Any:
        _OPENED.clear()
        try:
            return super().invoke(ctx)
        except ActiveMILError as exc:
            _report_error(exc)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except BrokenPipeError:  # output piped into `head`
            raise typer.Exit(0) from None
        except KeyboardInterrupt:
            sys.stderr.write(f"{_interrupted_message()}\n")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except OSError as exc:  # disk full, permission denied, ... (not a bug in activemil)
            where = f" ({exc.filename})" if exc.filename else ""
            sys.stderr.write(f"error: {exc.strerror or exc}{where}; check the path and retry.\n")
            raise typer.Exit(EXIT_USER_ERROR) from None


app = typer.Typer(
    cls=_Group,
    name="activemil",
    help="Closed-loop Bayesian optimisation of high-entropy catalyst compositions.\n\n"
    "Example: activemil init my-campaign --elements Ni,Fe,Co --step 0.05 --recipe fcc111 "
    "--target overpotential --minimize --unit mV",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"activemil {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Closed-loop Bayesian optimisation of high-entropy catalyst compositions.

    Example: activemil init my-campaign --elements Ni,Fe,Co --target overpotential --minimize
    """


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _esc(text: object) -> str:
    from rich.markup import escape

    return escape(str(text))


def _interrupted_message() -> str:
    """One sentence after Ctrl-C: whether anything was recorded."""
    done = sum(getattr(c, "committed", 0) for c in _OPENED)
    where = ", ".join(str(c.path) for c in _OPENED) or "the campaign"
    if done:
        return (f"interrupted (Ctrl-C) after {done} event(s) had been recorded in {where}; they "
                f"are kept, see `activemil status {where}`.")
    return ("interrupted (Ctrl-C) before anything was recorded; the campaign is unchanged, "
            "re-run the command when ready.")


def _open(directory: Path):
    from activemil.campaigns import Campaign

    camp = Campaign.open(directory)
    _OPENED.append(camp)
    return camp


def _notices(camp) -> None:
    for msg in camp.notices:
        sys.stderr.write(f"warning: {msg}\n")
    camp.notices.clear()


def _fmt(x: Any, digits: int = 4) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "" if x is None else str(x)
    if math.isnan(v):
        return ""
    return f"{v:.{digits}g}"


def _bounds(text: str | None, option: str) -> dict[str, float]:
    """Parse ``Ni=0.05,Fe=0.1`` into a dict."""
    out: dict[str, float] = {}
    if not text:
        return out
    for part in text.split(","):
        if not part.strip():
            continue
        el, sep, val = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[el.strip()] = float(val)
        except ValueError:
            raise InputError(
                f"{option} expects Element=fraction pairs such as {option} Ni=0.05,Fe=0.1, "
                f"not {part.strip()!r}."
            ) from None
    return out


def _options(text: str | None, option: str) -> dict[str, Any]:
    """Parse ``a=1,b=0.5,c=true,d=name`` into JSON scalars."""
    import json

    out: dict[str, Any] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, val = part.partition("=")
        if not sep or not key.strip():
            raise InputError(f"{option} expects key=value pairs such as n_members=3, not {part!r}.")
        try:
            out[key.strip()] = json.loads(val.strip())
        except ValueError:
            out[key.strip()] = val.strip()
    return out


# ------------------------------------------------------------------------------------- init
@app.command()
def init(
    directory: Path = typer.Argument(..., help="New (or empty) campaign directory."),
    elements: str = typer.Option(..., "--elements", help="Comma-separated symbols, e.g. Ni,Fe,Co."),
    step: float = typer.Option(0.05, "--step", help="Grid step in atomic fraction."),
    min_fraction: str = typer.Option(None, "--min", help="Per-element minimum, e.g. Ni=0.05."),
    max_fraction: str = typer.Option(None, "--max", help="Per-element maximum, e.g. Fe=0.5."),
    min_elements: int = typer.Option(1, "--min-elements", help="Fewest elements present."),
    max_elements: int = typer.Option(None, "--max-elements", help="Most elements present."),
    recipe: str = typer.Option("fcc111", "--recipe", help="Surface recipe (structures)."),
    encoder: str = typer.Option("zones", "--encoder", help="Site encoder: zones, chgnet, uma."),
    target: str = typer.Option(..., "--target", help="Name of the measured property."),
    maximize: bool = typer.Option(
        None, "--maximize/--minimize", help="Whether larger target values are better."
    ),
    unit: str = typer.Option("", "--unit", help="Unit of the target, e.g. mV, eV, mA/cm2."),
    surrogate: str = typer.Option(None, "--surrogate", help="Surrogate kind (default: mil)."),
    min_train: int = typer.Option(
        None, "--min-train", help="Measurements needed before the surrogate replaces space-filling."
    ),
    acquisition: str = typer.Option(
        None, "--acquisition", help="Default acquisition policy (default: kg)."),
    surrogate_options: str = typer.Option(
        None, "--surrogate-options", help="Surrogate settings passed to make_surrogate, e.g. "
        "n_members=3,n_folds=5."
    ),
    uma_checkpoint: Path = typer.Option(
        None, "--uma-checkpoint", help="Path to a licensed UMA checkpoint (--encoder uma)."
    ),
    bag_mode: str = typer.Option(
        "sampled", "--bag-mode", help="sampled (sites of one random surface) or expected "
        "(most probable site environments, weighted; zones encoder only)."
    ),
    n_sites: int = typer.Option(
        None, "--n-sites", help="Sites per bag (default: all sites of the surface; 64 for "
        "expected bags)."
    ),
    candidates: Path = typer.Option(
        None, "--candidates", help="CSV of candidate compositions (one fraction column per "
        "element): the pool is these rows instead of the grid (e.g. a synthesised plate)."
    ),
    prior: list[Path] = typer.Option(
        None, "--prior", help="A related measured table (CSV, one fraction column per element, "
        "other elements allowed) the model learns from; never a campaign measurement. Repeat "
        "for several."
    ),
    prior_target: list[str] = typer.Option(
        None, "--prior-target", help="Value column of the --prior table(s): one for all, or one "
        "per --prior in order. Same property and direction as --target; units may differ."
    ),
) -> None:
    """Create a campaign directory (campaign.json + an empty event log).

    Example:

        activemil init my-campaign --elements Ni,Fe,Co,Mn,Cr --step 0.05 --max-elements 5 \\
            --recipe fcc111 --target overpotential --minimize --unit mV

        activemil init plate-b --elements Ni,Fe,Co,Ta,Mn,Cu --step 0.1 --recipe oxide \
            --target overpotential_V --minimize --prior plate-a.csv --prior-target overpotential_V
    """
    from activemil.campaigns import POLICIES, Campaign
    from activemil.campaigns.priors import describe_prior, read_priors
    from activemil.space import DesignSpace
    from activemil.structures import available_recipes

    if maximize is None:
        raise InputError("Say which way is better: pass --maximize or --minimize.")
    if acquisition is not None and acquisition not in POLICIES:
        raise InputError(
            f"Unknown acquisition {acquisition!r}; choose one of {', '.join(POLICIES)}."
        )
    if min_train is not None and min_train < 1:
        raise InputError(f"--min-train must be at least 1, not {min_train}.")
    if recipe not in available_recipes():
        raise InputError(
            f"Unknown recipe {recipe!r}; choose one of {', '.join(available_recipes())}."
        )
    known_encoders = _known_encoders()
    if known_encoders and encoder not in known_encoders:
        raise InputError(
            f"Unknown encoder {encoder!r}; choose one of {', '.join(known_encoders)}."
        )
    encoder_settings: dict[str, Any] = {}
    if encoder == "uma":
        if uma_checkpoint is None:
            raise InputError(
                "The uma encoder needs a checkpoint: pass --uma-checkpoint PATH to a licensed "
                "UMA checkpoint file (or use --encoder chgnet)."
            )
        from activemil.featurize import get_encoder

        get_encoder("uma", checkpoint=str(uma_checkpoint))  # fails early and clearly
        encoder_settings["checkpoint"] = str(Path(uma_checkpoint).resolve())
    elif uma_checkpoint is not None:
        raise InputError("--uma-checkpoint only applies to --encoder uma; drop it or switch.")
    if bag_mode not in ("sampled", "expected"):
        raise InputError(f"Unknown --bag-mode {bag_mode!r}; use sampled or expected.")
    if bag_mode == "expected" and encoder != "zones":
        raise InputError("--bag-mode expected needs --encoder zones; use --bag-mode sampled.")
    if n_sites is not None and n_sites < 1:
        raise InputError(f"--n-sites must be at least 1, not {n_sites}.")
    space = DesignSpace(
        elements=tuple(e for e in elements.replace(" ", "").split(",") if e),
        step=step,
        min_fraction=_bounds(min_fraction, "--min"),
        max_fraction=_bounds(max_fraction, "--max"),
        min_elements=min_elements,
        max_elements=max_elements,
    )
    pool = _candidate_file(candidates, space.elements) if candidates is not None else None
    n = space.count() if pool is None else len(pool)
    if n == 0:
        raise InputError(
            "The design space is empty; loosen --min/--max or the element-count limits."
        )
    if pool is None:
        space.check_size(n)  # refuses only spaces whose enumeration would not fit in memory
    priors = read_priors(prior or [], prior_target or [])
    camp = Campaign.create(
        directory, space, target=target, maximize=maximize, unit=unit, recipe=recipe,
        encoder=encoder, encoder_settings=encoder_settings,
        featurize={"mode": bag_mode, "n_sites": n_sites, "seed": 0},
        surrogate={k: v for k, v in (
            ("kind", surrogate), ("min_train", min_train),
            ("settings", _options(surrogate_options, "--surrogate-options"))) if v is not None},
        acquisition={"policy": acquisition} if acquisition is not None else {},
        candidates=pool, priors=priors,
    )
    con = _console()
    direction = "maximize" if maximize else "minimize"
    where = f"(step {step:g})" if pool is None else f"(from {_esc(str(candidates))})"
    con.print(
        f"Created campaign [bold]{camp.path}[/]: {n:,} compositions of "
        f"{','.join(space.elements)} {where}; {direction} {_esc(target)}"
        f"{f' ({_esc(camp.unit)})' if camp.unit else ''}, recipe {recipe}, encoder {encoder}."
    )
    for t in priors:
        con.print(describe_prior(t.record(t.source)), markup=False)
    con.print(f"Next: activemil propose {directory} --budget 8", markup=False)


def _candidate_file(path: Path, elements: tuple[str, ...]):
    """The candidate pool of ``init --candidates``: one row per composition of ``path``."""
    from activemil.space import CandidatePool, read_csv_file

    df = read_csv_file(path, "--candidates")
    return CandidatePool.from_frame(df, elements)


def _known_encoders() -> list[str]:
    try:
        from activemil.featurize import available_encoders  # type: ignore[attr-defined]
    except ImportError:
        from activemil.featurize.base import available_encoders
    try:
        return list(available_encoders())
    except Exception:
        return []


# ------------------------------------------------------------------------------------ propose
@app.command()
def propose(
    directory: Path = typer.Argument(..., help="Campaign directory."),
    budget: int = typer.Option(8, "--budget", "-n", help="Number of candidates in the batch."),
    acquisition: str = typer.Option(
        None, "--acquisition", help="ucb, thompson, kg, logei, lognei, greedy or random "
        "(default: the campaign's)."
    ),
    alpha: float = typer.Option(None, "--alpha", help="Interval level: 0.05, 0.1 or 0.2."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    surrogate: str = typer.Option(None, "--surrogate", help="Surrogate kind (default: mil)."),
    model: str = typer.Option(None, "--model", help="Pin the posterior: gp, mil or transfer "
                              "(default auto: the variant with the lowest cross-validated "
                              "error, never worse than gp)."),
    engine: str = typer.Option("local", "--engine", help="Pool featurization on local "
                               "processes or on ray (needs activemil[ray])."),
    ray_address: str = typer.Option(None, "--ray-address", help="Featurize on this Ray cluster "
                                    "(host:port, ray://host:port or auto; default RAY_ADDRESS); "
                                    "implies --engine ray."),
) -> None:
    """Propose the next batch, record it and write batches/<batch>.csv for the lab.

    Example: activemil propose my-campaign --budget 8 --acquisition kg
    """
    from activemil.campaigns import propose as run

    camp = _open(directory)
    err = _console(stderr=True)
    from activemil.distributed import use_engine
    from activemil.progress import show_progress

    if ray_address or os.environ.get("RAY_ADDRESS"):
        engine = "ray"
    with show_progress(sys.stderr.isatty()), use_engine(engine, ray_address):
        res = run(
            camp, budget, policy=acquisition, alpha=alpha, seed=seed, surrogate=surrogate,
            model=model, progress=sys.stderr.isatty(), say=lambda m: err.print(m, markup=False),
        )
    _notices(camp)
    from rich.table import Table

    t = Table(title=f"Batch {res.batch} (round {res.round}, {res.mode}"
              f"{'' if res.mode != 'model' else ', ' + res.policy})")
    rows = []
    for _, r in res.table.iterrows():
        interval = "" if _fmt(r["lo"]) == "" else f"[{_fmt(r['lo'])}, {_fmt(r['hi'])}]"
        rows.append((str(r["rank"]), str(r["id"]), _fmt(r["median"]), interval,
                     _fmt(r["acquisition"]), str(r.get("top_sites") or "")))
    used = 0
    for k, c in enumerate(("rank", "id", "predicted", "interval", "acquisition")):
        width = max([len(c)] + [len(row[k]) for row in rows])  # never truncate these
        used += width + 3
        t.add_column(c, justify="right" if c in ("rank", "predicted", "acquisition") else "left",
                     no_wrap=True, min_width=width)
    con = _console()
    room = min(60, con.width - used - 4)
    has_sites = any(row[5] for row in rows)
    inline = has_sites and room >= 16  # else listed below the table
    if inline:
        t.add_column("top sites", overflow="ellipsis", no_wrap=True, max_width=room)
    for row in rows:
        t.add_row(*(row if inline else row[:5]))
    con.print(t)
    if has_sites and not inline:
        for row in rows:
            con.print(f"top sites of {row[1]}: {row[5]}", markup=False)
    for n in res.notes:
        con.print(f"note: {n}", markup=False)
    con.print(f"Lab sheet: {res.sheet}", markup=False)
    con.print(f"Next: measure, fill in the sheet, then activemil ingest {directory} {res.sheet} "
              "--dry-run", markup=False)


# ------------------------------------------------------------------------- submit / abandon
@app.command()
def submit(
    directory: Path = typer.Argument(..., help="Campaign directory."),
    ids: list[str] = typer.Argument(..., help="Candidate ids or batch ids (b001 = whole batch)."),
    via: str = typer.Option(..., "--via", help="dft or synthesis."),
    note: str = typer.Option("", "--note", help="Free text, e.g. a queue job id."),
) -> None:
    """Record that in-flight candidates went to DFT or synthesis.

    Example: activemil submit my-campaign Ni20Fe40Co40 Ni40Fe60 --via synthesis
    """
    camp = _open(directory)
    events = camp.submit(ids, via, note)
    _notices(camp)
    _console().print(f"Submitted {len(events)} candidate(s) via {via}: "
                     + ", ".join(e.candidate for e in events))


@app.command()
def abandon(
    directory: Path = typer.Argument(..., help="Campaign directory."),
    ids: list[str] = typer.Argument(..., help="Candidate ids or batch ids."),
    reason: str = typer.Option(..., "--reason", help="Why they will not be measured."),
) -> None:
    """Record that in-flight candidates will not be measured.

    Example: activemil abandon my-campaign Ni20Fe40Co40 --reason "phase separated"
    """
    camp = _open(directory)
    events = camp.abandon(ids, reason)
    _notices(camp)
    _console().print(f"Abandoned {len(events)} candidate(s): "
                     + ", ".join(e.candidate for e in events))


# ------------------------------------------------------------------------------------- ingest
@app.command()
def ingest(
    directory: Path = typer.Argument(..., help="Campaign directory."),
    file: Path = typer.Argument(..., help="Measurements, .csv or .xlsx."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and show, write nothing."),
    correct: bool = typer.Option(
        False, "--correct", help="Allow replacing values already measured from the same source."
    ),
    accept_outliers: bool = typer.Option(
        False, "--accept-outliers", help="Record values that look wrong (a zero beside a "
        "numeric note, ~1000x off the campaign's scale, outside the unit's plausible range)."
    ),
) -> None:
    """Validate a measurement table and record all its rows, or none.

    Columns: id or element columns/formula, value, optional std, unit, status
    (measured|failed|replicate|pending), source, note. Files up to ingest.max_rows rows
    (2,000,000 by default) are accepted; progress is shown for large files.

    Example: activemil ingest my-campaign my-campaign/batches/b001.csv --dry-run
    """
    from activemil.campaigns import ingest as run

    camp = _open(directory)
    err = _console(stderr=True)
    plan = run(camp, file, correct=correct, dry_run=dry_run, accept_outliers=accept_outliers,
               say=lambda m: err.print(m, markup=False))
    _notices(camp)
    for w in plan.warnings[:ROWS_SHOWN]:
        sys.stderr.write(f"warning: {w}\n")
    if len(plan.warnings) > ROWS_SHOWN:
        sys.stderr.write(f"warning: ... and {len(plan.warnings) - ROWS_SHOWN} more warning(s)\n")
    from rich.table import Table

    con = _console()
    if plan.rows:
        t = Table(title=f"{plan.file}{' (dry run)' if dry_run else ''}")
        for c in ("row", "candidate", "action", "value", "std", "source", "linked to"):
            t.add_column(c, no_wrap=c != "source")
        for r in plan.rows[:ROWS_SHOWN]:
            t.add_row(str(r["row"]), r["candidate"], r["action"], _fmt(r["value"], 6),
                      _fmt(r["std"], 3), r["source"], r["linked_to"])
        con.print(t)
        if len(plan.rows) > ROWS_SHOWN:
            con.print(f"... and {len(plan.rows) - ROWS_SHOWN:,} more row(s).", markup=False)
    skipped = ", ".join(f"{n} {why}" for why, n in plan.skipped.items())
    verb = "Would record" if dry_run else "Recorded"
    con.print(f"{verb} {len(plan.events)} event(s) from {plan.file}"
              f"{f' (skipped: {skipped})' if skipped else ''}.", markup=False)
    if dry_run:
        con.print(f"Nothing was written. To record: activemil ingest {directory} {file}"
                  f"{' --correct' if correct else ''}", markup=False)


# ------------------------------------------------------------------------------------- status
@app.command()
def status(directory: Path = typer.Argument(..., help="Campaign directory.")) -> None:
    """Show rounds, in-flight candidates, the best result so far and the next step.

    Example: activemil status my-campaign
    """
    from rich.table import Table

    camp = _open(directory)
    state = camp.state()
    _notices(camp)
    con = _console()
    obs = camp.observations(state)
    direction = "maximize" if camp.maximize else "minimize"
    con.print(
        f"[bold]{_esc(camp.path.name)}[/]: {direction} {_esc(camp.target)}"
        f"{f' ({_esc(camp.unit)})' if camp.unit else ''} over {','.join(camp.elements)} "
        f"({camp.pool_size():,} compositions); {len(state.batches)} round(s), "
        f"{len(obs)} measured point(s), {len(state.in_flight_ids)} in flight."
    )
    rounds = camp.rounds(state)
    if len(rounds):
        t = Table(title="Rounds (open = in flight, done = measured)")
        for c in ("batch", "date", "mode", "model", "n", "open", "done", "fail", "aband",
                  "best"):
            t.add_column(c, no_wrap=True)
        for _, r in rounds.iterrows():
            mode = r["policy"] if r["mode"] == "model" else r["mode"]
            mode = {"space-filling": "space-fill"}.get(mode, mode)
            t.add_row(r["batch"], str(r["proposed"])[:10], str(mode), str(r["model"]),
                      str(r["n"]), str(r["in_flight"]), str(r["measured"]), str(r["failed"]),
                      str(r["abandoned"]), _fmt(r["best"]))
        con.print(t)
        last = rounds[rounds["model"] != ""].tail(1)
        if len(last):
            r = last.iloc[0]
            if r["rule"]:  # crps / spearman beside every recorded model
                scores = "; ".join(
                    f"{k} CRPS {_fmt(r['cv_crps'].get(k), 3)} Spearman "
                    f"{_fmt(r['cv_spearman'].get(k), 3)}" for k in r["cv_mse"])
                con.print(f"Model choice of {r['batch']}: {r['model']} by rule {r['rule']} "
                          f"(cross-validated on the campaign's measurements: {scores}).",
                          markup=False)
            else:  # proposals recorded before the rule was named: lowest CV MSE
                scores = ", ".join(f"{k} {v:.3g}" for k, v in r["cv_mse"].items()
                                   if v is not None)
                con.print(f"Model choice of {r['batch']}: {r['model']} (cross-validated MSE of "
                          f"the mean on the campaign's measurements, standardised: {scores}).",
                          markup=False)
    from activemil.campaigns.priors import describe_prior

    for p in camp.cfg.priors:
        con.print(describe_prior(p.model_dump()), markup=False)
    flying = camp.in_flight(state)
    if len(flying):
        t = Table(title="In flight")
        for c in ("id", "status", "via", "batch", "predicted", "interval"):
            t.add_column(c, no_wrap=True)
        for _, r in flying.head(30).iterrows():
            interval = "" if _fmt(r["lo"]) == "" else f"[{_fmt(r['lo'])}, {_fmt(r['hi'])}]"
            t.add_row(r["id"], r["status"], r["via"], str(r["batch"]), _fmt(r["median"]),
                      interval)
        con.print(t)
        if len(flying) > 30:
            con.print(f"... and {len(flying) - 30} more in flight.")
    best = camp.best(state)
    if best is not None:
        unc = ""
        if best["n"] > 1:
            unc = f" ± {_fmt(best['std'])} (std of {best['n']} replicates)"
        elif _fmt(best["std"]):
            unc = f" ± {_fmt(best['std'])} (reported std)"
        pred = best.get("predicted")
        ptxt = ""
        if pred and pred.get("lo") is not None:
            ptxt = (f"; predicted {_fmt(pred['median'])} in [{_fmt(pred['lo'])}, "
                    f"{_fmt(pred['hi'])}] at alpha {pred['alpha']}")
        con.print(f"Best so far: [bold]{best['id']}[/] {_esc(camp.target)} = "
                  f"{_fmt(best['value'])}{f' {_esc(camp.unit)}' if camp.unit else ''}{unc} "
                  f"(round {_fmt(best['round'])}){ptxt}.")
    con.print(f"Next: {camp.next_step(state)}", markup=False)


# ------------------------------------------------------------------------------------- export
@app.command()
def export(
    directory: Path = typer.Argument(..., help="Campaign directory."),
    output: Path = typer.Option(None, "-o", "--output", help="CSV file (default: stdout)."),
    table: str = typer.Option(
        "events", "--table", help="events (one row per event) or observations (one per point)."
    ),
) -> None:
    """Export a tidy CSV of every event (or of the measured points).

    Example: activemil export my-campaign -o my-campaign-events.csv
    """
    camp = _open(directory)
    if table == "events":
        df = camp.export_events()
    elif table == "observations":
        df = camp.observations()
    else:
        raise InputError(f"--table must be events or observations, not {table!r}.")
    _notices(camp)
    text = df.to_csv(index=False)
    if output is None:
        sys.stdout.write(text)
    else:
        from activemil.campaigns.store import atomic_write

        atomic_write(output, text.encode("utf-8"))
        _console(stderr=True).print(f"Wrote {len(df)} row(s) to {output}.")


@app.command()
def sheet(
    directory: Path = typer.Argument(..., help="Campaign directory."),
    batch: str = typer.Argument(..., help="Batch id, e.g. b001."),
    output: Path = typer.Option(None, "-o", "--output", help="Where to write the CSV."),
) -> None:
    """Write the lab sheet of a batch (batches/<batch>.csv by default); never replaces a file
    that differs (a sheet the lab filled in).

    Example: activemil sheet my-campaign b002 -o b002-for-the-lab.csv
    """
    camp = _open(directory)
    target = output or camp.batches_dir / f"{batch}.csv"
    existed = Path(target).exists()
    path = camp.write_batch_sheet(batch, output)
    _notices(camp)
    _console().print(f"{path} is already up to date." if existed else f"Wrote {path}.",
                     markup=False)

# ------------------------------------------------------------------------- hypotheses
@app.command()
def hypotheses(
    directory: Path = typer.Argument(..., help="Campaign directory."),
    top: int = typer.Option(8, "--top", help="Number of candidates to explain."),
    source: str = typer.Option(
        "auto", "--from", help="proposed (latest batch), best (best predicted unmeasured) or "
        "auto (latest batch if any, else best)."
    ),
    fmt: str = typer.Option("md", "--format", help="md (with PNG pictures), json or csv."),
    output: Path = typer.Option(None, "-o", "--output", help="Output file (default: "
                                "DIR/hypotheses.<format>)."),
    top_sites: int = typer.Option(5, "--top-sites", help="Attended sites listed per record."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random-occlusion control."),
) -> None:
    """Export attention-guided, occlusion-checked synthesis hypotheses.

    Example: activemil hypotheses my-campaign --top 8 -o hypotheses.md
    """
    from activemil.hypotheses.campaign import campaign_hypotheses

    camp = _open(directory)
    err = _console(stderr=True)
    out = output or (Path(directory) / f"hypotheses.{fmt}")
    hyps, path, rules = campaign_hypotheses(
        camp, top=top, source=source, output=out, fmt=fmt, top_sites=top_sites, seed=seed,
        progress=sys.stderr.isatty(), say=lambda m: err.print(m, markup=False),
    )
    con = _console()
    for h in hyps:
        con.print(f"{h.candidate_id}: {h.statement}", markup=False)
        for w in h.warnings:
            con.print(f"  warning: {w}", markup=False)
    for r in rules:
        con.print(f"rule: {r.statement}", markup=False)
        for w in r.warnings:
            con.print(f"  warning: {w}", markup=False)
    con.print(f"Wrote {len(hyps)} hypotheses to {path}.", markup=False)


# --------------------------------------------------------------------------- report
@app.command()
def report(
    directory: Path = typer.Argument(..., help="Campaign directory or activemil simulate "
                                     "output directory."),
    output: Path = typer.Option(None, "-o", "--output", help="HTML file to write (default: "
                                "DIR/report.html)."),
    fit: bool = typer.Option(False, "--fit", help="Fit a surrogate for the hypotheses when "
                             "none is cached for the current measurements (minutes)."),
    top: int = typer.Option(4, "--top", help="Number of hypotheses shown (campaigns)."),
) -> None:
    """Write one self-contained HTML report page (figures inline, no network).

    Example: activemil report my-campaign -o report.html
    """
    from activemil.report import report as write_report

    err = _console(stderr=True)
    out = output or (Path(directory) / "report.html")
    path = write_report(directory, out, fit=fit, top=top,
                        say=lambda m: err.print(m, markup=False))
    _console().print(f"Wrote the report to {path}.", markup=False)


# ------------------------------------------------------------------------- simulate
@app.command()
def simulate(
    data: Path = typer.Option(None, "--data", help="CSV with one column per element and a "
                              "target column; the pool is its rows."),
    dataset: str = typer.Option(None, "--dataset", help="Bundled table: agirpdptru-orr, "
                                "oer-plate-3496, oer-plate-3851."),
    simulator: str = typer.Option(None, "--simulator", help="Physics oracle on a grid: hea-orr."),
    target: str = typer.Option(None, "--target", help="Target column of --data."),
    maximize: bool = typer.Option(None, "--maximize/--minimize", help="Direction (--data)."),
    elements: str = typer.Option("Ag,Ir,Pd,Pt,Ru", "--elements",
                                 help="Grid elements (--simulator)."),
    step: float = typer.Option(0.1, "--step", help="Grid step (--simulator)."),
    sim_size: int = typer.Option(48, "--sim-size", help="Simulated surface edge in atoms "
                                 "(--simulator; 96 as published)."),
    strategy: str = typer.Option("mil-kg,gp-ei,baybe,random", "--strategy",
                                 help="Comma-separated. Campaign strategies (a temporary "
                                 "campaign each, the user's propose/ingest path): mil-ucb, "
                                 "mil-thompson, mil-kg, mil-lognei, mil-greedy, gp-ucb, gp-kg "
                                 "or <surrogate>-<policy>. Peers: gp-ei (BoTorch GP + qLogEI), "
                                 "baybe (needs activemil[peers]), random."),
    budget: int = typer.Option(8, "--budget", help="Picks per round."),
    rounds: int = typer.Option(10, "--rounds", help="Rounds after the initial batch."),
    n_init: int = typer.Option(None, "--init", help="Random initial rows, the same for every "
                               "strategy (default: budget; 0: campaigns start space-filling)."),
    seeds: int = typer.Option(3, "--seeds", help="Number of seeds (0..S-1)."),
    recipe: str = typer.Option(None, "--recipe", help="Featurization recipe (default: fcc111 "
                               "for alloys, oxide for oxide tables)."),
    encoder: str = typer.Option("zones", "--encoder", help="Site encoder: zones, chgnet."),
    n_sites: int = typer.Option(None, "--n-sites", help="Sites per bag (default: all)."),
    fast: bool = typer.Option(False, "--fast", help="Small surrogates (1 network x 3 folds, "
                              "short training): minutes instead of hours."),
    jobs: int = typer.Option(1, "--jobs", help="Parallel processes (campaigns run in parallel)."),
    output: Path = typer.Option(Path("simulation"), "-o", "--output", help="Output directory."),
    keep_campaigns: bool = typer.Option(False, "--keep-campaigns", help="Keep every campaign "
                                        "directory under OUTPUT/campaigns for inspection."),
    engine: str = typer.Option("local", "--engine", help="local (--jobs processes) or ray "
                               "(needs activemil[ray]; a local Ray with --jobs workers)."),
    ray_address: str = typer.Option(None, "--ray-address", help="Join this Ray cluster "
                                    "(host:port, ray://host:port or auto; default RAY_ADDRESS); "
                                    "implies --engine ray."),
    prior: list[Path] = typer.Option(
        None, "--prior", help="A related measured table (other elements allowed) for the "
        "+prior strategies (mil-kg+prior, gp-ei+prior = multi-task GP, baybe+prior = BayBE "
        "TaskParameter). Repeat for several."),
    prior_target: list[str] = typer.Option(
        None, "--prior-target", help="Value column of the --prior table(s): one for all, or one "
        "per --prior in order."),
) -> None:
    """Backtest strategies on a table, a bundled dataset or a physics simulator.

    Example: activemil simulate --dataset agirpdptru-orr --budget 8 --rounds 5 --seeds 2 --fast
    -o out/quickstart

    Transfer: activemil simulate --dataset oer-plate-3851 --prior plate_3496.csv --prior-target
    overpotential_V --strategy mil-kg+prior,mil-kg,gp-ei+prior,baybe+prior --fast
    """
    from activemil.simulate import FAST_SURROGATE_SETTINGS, Scenario
    from activemil.simulate import simulate as run

    sources = [x for x in (data, dataset, simulator) if x is not None]
    if len(sources) != 1:
        raise InputError("Give exactly one of --data FILE, --dataset NAME or --simulator NAME.")
    if data is not None:
        if target is None or maximize is None:
            raise InputError("--data needs --target COLUMN and --maximize or --minimize.")
        scenario = Scenario.from_csv(data, target, "maximize" if maximize else "minimize",
                                     recipe=recipe or "auto")
    elif dataset is not None:
        scenario = Scenario.from_dataset(dataset, recipe=recipe)
    else:
        from activemil.simulators import get_simulator
        from activemil.space import DesignSpace

        oracle = get_simulator(simulator, size=sim_size)
        pool = DesignSpace(tuple(e for e in elements.split(",") if e), step=step).enumerate()
        _console(stderr=True).print(
            f"Evaluating {simulator} on {len(pool):,} compositions for scoring ...", markup=False)
        scenario = Scenario.from_oracle(oracle, pool, recipe=recipe or "auto",
                                        progress=sys.stderr.isatty())
    names = [x.strip() for x in strategy.split(",") if x.strip()]
    if prior:
        from activemil.campaigns.priors import read_priors

        if not any(n.endswith("+prior") for n in names):
            raise InputError(
                "--prior is used only by +prior strategies; add e.g. mil-kg+prior,gp-ei+prior,"
                "baybe+prior to --strategy (beside the same strategies without it).")
        scenario = scenario.with_priors(read_priors(prior, prior_target or []))
    elif prior_target:
        raise InputError("--prior-target was given without --prior; pass --prior FILE too.")
    err = _console(stderr=True)
    err.print(f"Simulating {', '.join(names)} on {scenario.name} ({len(scenario.pool):,} "
              f"candidates): {seeds} seeds x {rounds} rounds x {budget} ...", markup=False)
    res = run(
        scenario, names, seeds=seeds, rounds=rounds, budget=budget, n_init=n_init, jobs=jobs,
        outdir=output, encoder=encoder, n_sites=n_sites,
        cache_dir=Path(output) / "features", recipe=recipe,
        campaigns_dir=Path(output) / "campaigns" if keep_campaigns else None,
        surrogate_settings=FAST_SURROGATE_SETTINGS if fast else None,
        progress=sys.stderr.isatty(),
        engine="ray" if ray_address or os.environ.get("RAY_ADDRESS") else engine,
        ray_address=ray_address,
    )
    from activemil.simulate import summary_markdown

    typer.echo(summary_markdown(res.summary))  # plain: a Markdown table must not be wrapped
    for role, path in res.paths.items():
        typer.echo(f"{role}: {path}")


def main() -> None:
    """Console-script entry point.

    Torch uses one intra-op thread unless ``OMP_NUM_THREADS`` says otherwise: the networks are
    small, and on a 2-core machine with any other load, 2 spinning OpenMP threads made a
    campaign's surrogate fit 100x slower (measured: 638 s vs 6 s for 15 networks on 8 bags).
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    app()


if __name__ == "__main__":
    main()
