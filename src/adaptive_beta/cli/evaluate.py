"""`abeta evaluate baselines`: the walk-forward scorecard of the classical baselines on a dataset."""

from __future__ import annotations

import tomllib
from pathlib import Path

import typer
from pydantic import ValidationError

from adaptive_beta.cli.train import RAY_HELP


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def validation_message(exc: ValidationError, source: str = "config") -> str:
    """One sentence per problem, naming the field: `config field 'splits.embargo': ...`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{source} field {loc!r}: {msg}" if loc else f"{source}: {msg}")
    return "; ".join(parts)


def load_eval_config(path: Path | None, horizon: str | None = None):
    """An `EvalConfig` from a TOML/YAML file (keys as in EvalConfig), with `horizon` overriding it."""
    from adaptive_beta.training.scorecard import EvalConfig

    data: dict = {}
    if path is not None:
        if not path.is_file():
            raise ValueError(f"config file {path} does not exist")
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text) or {}
            else:
                data = tomllib.loads(text)
        except Exception as exc:  # TOMLDecodeError / YAMLError
            raise ValueError(
                f"config file {path} is not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}"
            ) from exc
        if not isinstance(data, dict):
            raise ValueError(f"config file {path} must hold a table of settings")
        data = data.get("evaluate", data)  # allow an [evaluate] section in a larger file
    if horizon is not None:
        data["horizon"] = horizon
    return EvalConfig(**data)


def baselines(
    data: str = typer.Option(..., "--data", help="Dataset folder or manifest (.toml/.yaml)."),
    horizon: str | None = typer.Option(
        None,
        "--horizon",
        help="Forward window of the realised beta, e.g. 30d (default: the config's, else 30d).",
    ),
    out: Path = typer.Option(..., "--out", help="Where to write the scorecard JSON (atomically)."),
    config: Path | None = typer.Option(
        None, "--config", help="TOML/YAML EvalConfig (splits, bootstrap, ...)."
    ),
    ray_address: str | None = typer.Option(None, "--ray-address", help=RAY_HELP),
) -> None:
    """Walk-forward scorecard of every classical baseline: prints a table, writes JSON records."""
    from adaptive_beta.models.durations import parse_duration
    from adaptive_beta.training.cluster import resolve_address

    address = resolve_address(ray_address)  # a bad address: exit 2 before any work
    if horizon is not None:
        try:
            parse_duration(horizon)
        except ValueError as exc:
            _fail(f"option --horizon: {exc}")
    try:
        cfg = load_eval_config(config, horizon)
    except ValidationError as exc:
        _fail(validation_message(exc, "config"))
    except ValueError as exc:
        _fail(str(exc))

    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.training.scorecard import evaluate_baselines

    panel = load_dataset(data)  # DataError -> exit 2 in adaptive_beta.cli.main.main
    typer.secho(f"data: {panel.describe()}", err=True)
    try:
        card = evaluate_baselines(panel, cfg, ray_address=address)
    except ValueError as exc:  # e.g. data too short for one fold
        _fail(str(exc))
    typer.echo(card.table())
    card.to_json(out)
    typer.secho(f"wrote {len(card.records)} records to {out}", err=True)
