"""`abeta audit report`: the periodic compliance report as one mailable HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    since: Annotated[
        str, typer.Option("--since", help="Start of the period (UTC, inclusive), e.g. 2026-01-01.")
    ],
    until: Annotated[
        str, typer.Option("--until", help="End of the period (UTC, exclusive), e.g. 2026-02-01.")
    ],
    out: Annotated[Path, typer.Option("--out", help="HTML file to write.")] = Path("report.html"),
    db: Annotated[
        str | None,
        typer.Option(
            "--db", help="Audit log: path, sqlite:///path or postgresql://... (default ABETA_AUDIT_DB)."
        ),
    ] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Verify the whole hash chain.")] = True,
) -> None:
    """Counts per model version and endpoint, forecast and contribution distributions, the largest
    forecast changes and their drivers, chain status and champion history, charts inline."""
    from adaptive_beta.models.audit.log import AuditReader, StoreMissing, parse_time
    from adaptive_beta.models.settings import get_settings
    from adaptive_beta.serving.compliance.registry import champion_history
    from adaptive_beta.serving.compliance.report import build_report, render_report, write_report

    bounds = {}
    for name, value in (("--since", since), ("--until", until)):
        try:
            bounds[name] = parse_time(value, name)
        except ValueError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
    if bounds["--since"] >= bounds["--until"]:
        typer.secho(f"error: --since {since} is not before --until {until}", fg="red", err=True)
        raise typer.Exit(2)
    url = db or str(get_settings().audit_db)
    try:
        reader = AuditReader(url)
    except StoreMissing as exc:
        typer.secho(f"error: --db: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    with reader:
        data = build_report(reader, since, until, history=champion_history(), verify=verify)
    path = write_report(render_report(data), out)
    typer.echo(
        f"wrote {path} ({data.n_records} records, chain {'ok' if data.verify is None or data.verify.ok else 'BROKEN'})"
    )
