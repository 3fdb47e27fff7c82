"""`abeta audit verify` and `abeta audit export`: check and extract the audit log from the shell.

Both open the database read-only and never create one. Exit codes: 0 ok, 1 the chain is broken
or does not match its signed anchors (verify), 2 a usage problem (missing database, anchor file
or key, bad date or format).
"""

from __future__ import annotations

from pathlib import Path

import typer

DB_HELP = "Audit database: a path, sqlite:///path or postgresql://... (default: ABETA_AUDIT_DB)."


def _default_db(db: str | None) -> str:
    """The given --db, else the audit_db setting (ABETA_AUDIT_DB, default ABETA_HOME/audit/audit.db)."""
    from adaptive_beta.models.settings import get_settings

    return db or str(get_settings().audit_db)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def verify(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    anchors: str | None = typer.Option(
        None,
        "--anchors",
        help="Signed anchor file (default: ABETA_AUDIT_ANCHORS, else DB.anchors beside a SQLite database).",
    ),
    key: str | None = typer.Option(
        None,
        "--key",
        help="HMAC key file of the anchors (default: ABETA_AUDIT_ANCHOR_KEY, else DB.anchor-key beside SQLite).",
    ),
) -> None:
    """Walk the hash chain and compare it with its signed anchors; print OK, or each problem with
    the first bad record (exit 1). Truncation and rewrites of the end need the anchor file."""
    from adaptive_beta.models.audit.log import verify_chain
    from adaptive_beta.models.audit.store import StoreMissing
    from adaptive_beta.models.settings import get_settings

    db = _default_db(db)
    anchors = anchors or get_settings().audit_anchors
    key = key or get_settings().audit_anchor_key
    try:
        result = verify_chain(db)
    except StoreMissing as exc:
        raise _fail(f"{exc} (--db)") from None
    except (ValueError, ImportError) as exc:
        raise _fail(f"--db {db}: {exc}") from None
    if result.ok:
        typer.echo(f"OK: {result.n_records} records, chain intact, head {result.head_hash}")
    else:
        typer.secho(f"FAILED: {result.problem} ({result.n_records} records stored)", fg=typer.colors.RED)
    anchors_ok = _verify_anchors(db, anchors, key)
    if not (result.ok and anchors_ok):
        raise typer.Exit(1)


def _verify_anchors(db: str, anchors: str | None, key: str | None) -> bool:
    """Print the anchor check; False when it found a problem. Exit 2 when it cannot be made."""
    from adaptive_beta.models.audit.anchors import (
        AnchorError,
        default_paths,
        has_default_anchor_file,
        verify_anchors,
    )

    if anchors is None and not has_default_anchor_file(db):
        typer.secho(
            "warning: anchors not checked: name the anchor file of a PostgreSQL log (--anchors)", err=True
        )
        return True
    if anchors is not None and not Path(anchors).exists():
        raise _fail(f"anchor file {anchors} does not exist (--anchors)")
    try:
        check = verify_anchors(db, anchors, key)
    except AnchorError as exc:
        raise _fail(str(exc)) from None
    if check is None:
        path = default_paths(db, anchors, key)[0]
        typer.secho(
            f"warning: no anchor file {path}: truncation and rewrites of the end cannot be detected",
            err=True,
        )
        return True
    if not check.ok:
        first = f" (first bad record: seq {check.first_bad_seq})" if check.first_bad_seq else ""
        typer.secho(f"FAILED: anchors: {check.problem}{first}", fg=typer.colors.RED)
        return False
    last = check.last
    where = f"; last anchor seq {last.seq} at {last.time}" if last else ""
    typer.echo(f"OK: {check.n_anchors} signed anchors match{where}")
    if check.unanchored:
        lo, hi = check.unanchored
        typer.echo(
            f"note: records seq {lo}..{hi} were stored after the last anchor: a forged append "
            "there is only detected at the next anchor"
        )
    return True


def export(
    out: Path = typer.Option(..., "--out", help="File to write (replaced atomically)."),
    since: str | None = typer.Option(
        None, "--since", help="Earliest record time, UTC, inclusive (2026-01-01)."
    ),
    until: str | None = typer.Option(None, "--until", help="Latest record time, UTC, exclusive."),
    format: str = typer.Option("jsonl", "--format", help="parquet, csv or jsonl."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Export records (oldest first) in a time range as parquet, csv or jsonl."""
    from adaptive_beta.models.audit.export import FORMATS
    from adaptive_beta.models.audit.log import AuditReader, parse_time
    from adaptive_beta.models.audit.store import StoreMissing

    if format not in FORMATS:
        raise typer.BadParameter(f"{format!r} is not one of {', '.join(FORMATS)}", param_hint="'--format'")
    for name, value in (("--since", since), ("--until", until)):
        try:
            parse_time(value, name)
        except ValueError:
            raise typer.BadParameter(
                f"{value!r} is not an ISO 8601 date or time (e.g. 2026-01-31)", param_hint=f"'{name}'"
            ) from None
    db = _default_db(db)
    try:
        reader = AuditReader(db)
    except StoreMissing as exc:
        raise _fail(f"{exc} (--db)") from None
    except (ValueError, ImportError) as exc:
        raise _fail(f"--db {db}: {exc}") from None
    with reader:
        n = reader.export(out, since=since, until=until, fmt=format)
    typer.echo(f"wrote {n} records to {out}")


def reproduce(
    request_id: str = typer.Option(..., "--request-id", help="The record's request id."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    market_db: str | None = typer.Option(
        None, "--market-db", help="Market-data store the service read (default: ABETA_MARKET_DB)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="The record's model: bundle folder or registry URI (default: ABETA_MODEL)."
    ),
    tolerance: float = typer.Option(1e-9, "--tolerance", help="Largest absolute difference accepted."),
) -> None:
    """Recompute a stored-state /forecast record from the market-data store: replay the stored bars
    it names with its model and compare every logged number (exit 1 if they differ by more than
    --tolerance or the store no longer holds the same bars)."""
    from adaptive_beta.models.audit.log import AuditReader
    from adaptive_beta.models.audit.store import StoreMissing
    from adaptive_beta.models.market.store import open_market_store
    from adaptive_beta.models.settings import get_settings
    from adaptive_beta.serving.reproduce import NotReproducible, model_state
    from adaptive_beta.serving.reproduce import reproduce as redo

    db = _default_db(db)
    try:
        with AuditReader(db) as reader:
            rec = reader.get(request_id)
    except StoreMissing as exc:
        raise _fail(f"{exc} (--db)") from None
    if rec is None:
        raise _fail(f"no record with request id {request_id!r} in {db} (--request-id)")
    settings = get_settings()
    state = model_state(model or settings.model)
    with open_market_store(market_db or str(settings.market_db)) as store:
        try:
            found = redo(state, store, rec)
        except NotReproducible as exc:
            raise _fail(str(exc)) from None
    typer.echo(
        f"{len(found.recomputed)} forecasts recomputed from the store; max abs difference "
        f"{found.max_abs_diff:.3g}; stored bars {'match' if found.bars_match else 'DIFFER from'} the record"
    )
    if found.missing:
        typer.echo(f"no forecast recomputed for {', '.join(found.missing)}")
    if not found.bars_match or found.missing or not found.max_abs_diff <= tolerance:
        raise typer.Exit(1)
