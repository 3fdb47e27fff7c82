"""`abeta data validate DIR_OR_MANIFEST`: check a dataset and say what is in it, or what is wrong.

Prints one line per file read (rows, time span, factor publication rule) and a summary of the
panel, exit code 0; or every problem found across all files, one per line, exit code 2.
"""

from __future__ import annotations

import typer


def validate(
    data: str = typer.Argument(
        ..., help="A dataset folder (assets/, factors/, optional truth/) or a .toml/.yaml manifest."
    ),
) -> None:
    """Check a dataset: every file, every row; print a summary or every problem (exit 2)."""
    from adaptive_beta.models.data.loaders import inspect_dataset

    report = inspect_dataset(data)
    for summary in report.files:
        typer.echo(summary.line())
    if report.errors:
        for err in report.errors:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        n = len(report.errors)
        typer.secho(f"{n} problem{'s' if n != 1 else ''} in {data}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    assert report.panel is not None
    panel = report.panel
    typer.echo(f"panel: {panel.describe()}")
    typer.echo(
        f"ok: {data} loads in {report.seconds:.2f} s; manifest sha256 {panel.meta.get('manifest_sha256', '')[:12]}; "
        f"fingerprint {panel.fingerprint()[:12]}"
    )
