"""`abeta audit verify` and `abeta audit export`: check and extract the audit log from the shell.

Both open the database read-only and never create one. Exit codes: 0 ok, 1 the chain is broken
(verify), 2 a usage problem (missing database, bad date or format).
"""

from __future__ import annotations

from pathlib import Path

import typer

DEFAULT_DB = "audit/audit.db"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def verify(
    db: str = typer.Option(
        DEFAULT_DB,
        "--db",
        envvar="ABETA_AUDIT_DB",
        help="Audit database: a path, sqlite:///path or postgresql://...",
    ),
) -> None:
    """Walk the hash chain; print OK with the head hash, or the first tampered record (exit 1)."""
    from adaptive_beta.models.audit.log import verify_chain
    from adaptive_beta.models.audit.store import StoreMissing

    try:
        result = verify_chain(db)
    except StoreMissing as exc:
        raise _fail(f"{exc} (--db)") from None
    except (ValueError, ImportError) as exc:
        raise _fail(f"--db {db}: {exc}") from None
    if result.ok:
        typer.echo(f"OK: {result.n_records} records, chain intact, head {result.head_hash}")
        return
    typer.secho(f"FAILED: {result.problem} ({result.n_records} records stored)", fg=typer.colors.RED)
    raise typer.Exit(1)


def export(
    out: Path = typer.Option(..., "--out", help="File to write (replaced atomically)."),
    since: str | None = typer.Option(
        None, "--since", help="Earliest record time, UTC, inclusive (2026-01-01)."
    ),
    until: str | None = typer.Option(None, "--until", help="Latest record time, UTC, exclusive."),
    format: str = typer.Option("jsonl", "--format", help="parquet, csv or jsonl."),
    db: str = typer.Option(
        DEFAULT_DB,
        "--db",
        envvar="ABETA_AUDIT_DB",
        help="Audit database: a path, sqlite:///path or postgresql://...",
    ),
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
    try:
        reader = AuditReader(db)
    except StoreMissing as exc:
        raise _fail(f"{exc} (--db)") from None
    except (ValueError, ImportError) as exc:
        raise _fail(f"--db {db}: {exc}") from None
    with reader:
        n = reader.export(out, since=since, until=until, fmt=format)
    typer.echo(f"wrote {n} records to {out}")
