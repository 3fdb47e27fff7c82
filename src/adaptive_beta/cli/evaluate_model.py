"""`abeta evaluate model`: a trained model, unchanged, vs every baseline on another dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from adaptive_beta.cli.train import RAY_HELP


def model(
    model: str = typer.Option(..., "--model", help="models:/NAME@ALIAS, runs:/... or a bundle folder."),
    data: str = typer.Option(..., "--data", help="Dataset folder or manifest to score on."),
    horizon: str = typer.Option("30d", "--horizon", help="Forward-beta horizon of the realised target."),
    out: Path = typer.Option(..., "--out", help="Scorecard JSON (records, kind model beside baselines)."),
    start: str | None = typer.Option(
        None, "--start", help="Score only from this date (e.g. after training)."
    ),
    ray_address: str | None = typer.Option(None, "--ray-address", help=RAY_HELP),
) -> None:
    """Score a trained model and every baseline on DATA (out of sample); print the table, write JSON."""
    from adaptive_beta.models.durations import parse_duration
    from adaptive_beta.training.cluster import resolve_address
    from adaptive_beta.training.evaluate_model import evaluate_model

    address = resolve_address(ray_address)  # a bad address: exit 2 before any work
    try:
        parse_duration(horizon)
    except ValueError as exc:
        typer.secho(f"error: --horizon: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    card = evaluate_model(model, data, horizon, start, ray_address=address)
    typer.echo(card.table())
    if card.meta.get("features_absent"):
        typer.echo(
            f"note: features absent on this dataset (fed as training means): {card.meta['features_absent']}"
        )
    card.to_json(out)
    typer.echo(
        f"wrote {out} ({len(card.records)} records; period {card.meta['period'][0]} .. {card.meta['period'][1]})"
    )
