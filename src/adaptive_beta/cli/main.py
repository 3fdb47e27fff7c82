"""The `abeta` command line: one entry point for data, evaluation, training, serving and audit.

Each command lives in a small module of this package (`simulate.py`, `train.py`, `serve.py`, ...),
which composes `models`, `training` and `serving` and keeps heavy imports (torch, mlflow, bentoml) inside the function, so `abeta data ...` starts fast.
Errors for people (`DataError`, `ValueError` from configs) print one line and exit 2.
"""

from __future__ import annotations

import sys

import typer

from adaptive_beta.models.data.schema import DataError

# Help is plain click text: Rich markup swallowed literal brackets such as `[monitor]` and
# `[policy]` (TOML section names) in option help.
PLAIN = {"no_args_is_help": True, "rich_markup_mode": None}
app = typer.Typer(add_completion=False, help="Adaptive Beta: forward beta of crypto perps.", **PLAIN)
data_app = typer.Typer(help="Market data: simulate, validate, features, fetch.", **PLAIN)
fetch_app = typer.Typer(help="Download market data into a dataset folder (resumable).", **PLAIN)
evaluate_app = typer.Typer(help="Walk-forward scorecards: baselines and models.", **PLAIN)
models_app = typer.Typer(help="Registered models.", **PLAIN)
audit_app = typer.Typer(help="The audit log: verify, export, report.", **PLAIN)
store_app = typer.Typer(help="The service's market-data store: load a dataset, list the series.", **PLAIN)
app.add_typer(data_app, name="data")
data_app.add_typer(fetch_app, name="fetch")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(models_app, name="models")
app.add_typer(audit_app, name="audit")
app.add_typer(store_app, name="store")


def _version(value: bool) -> None:
    if value:
        from adaptive_beta import __version__

        typer.echo(f"abeta (adaptive-beta) {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Adaptive Beta: forward beta of crypto perps."""


def _register() -> None:
    """Attach commands from their modules (each module owns its command's options)."""
    import importlib

    table = [
        (data_app, "simulate", "adaptive_beta.cli.simulate", "simulate"),
        (data_app, "validate", "adaptive_beta.cli.data", "validate"),
        (data_app, "features", "adaptive_beta.cli.features", "features"),
        (fetch_app, "binance", "adaptive_beta.cli.fetch", "binance"),
        (fetch_app, "ccxt", "adaptive_beta.cli.fetch", "ccxt"),
        (evaluate_app, "baselines", "adaptive_beta.cli.evaluate", "baselines"),
        (evaluate_app, "model", "adaptive_beta.cli.evaluate_model", "model"),
        (app, "train", "adaptive_beta.cli.train", "train"),
        (app, "export", "adaptive_beta.cli.train", "export"),
        (app, "promote", "adaptive_beta.cli.train", "promote"),
        (models_app, "list", "adaptive_beta.cli.train", "models_list"),
        (models_app, "export-bento", "adaptive_beta.cli.bento", "export_bento"),
        (app, "tune", "adaptive_beta.cli.tune", "tune"),
        (app, "run", "adaptive_beta.cli.run", "run"),
        (app, "backtest", "adaptive_beta.cli.backtest", "backtest"),
        (app, "stress", "adaptive_beta.cli.stress", "stress"),
        (app, "monitor", "adaptive_beta.cli.monitor", "monitor"),
        (app, "recalibrate", "adaptive_beta.cli.monitor", "recalibrate"),
        (app, "predict", "adaptive_beta.cli.predict", "predict"),
        (app, "serve", "adaptive_beta.cli.serve", "serve"),
        (audit_app, "verify", "adaptive_beta.cli.audit", "verify"),
        (audit_app, "export", "adaptive_beta.cli.audit", "export"),
        (audit_app, "reproduce", "adaptive_beta.cli.audit", "reproduce"),
        (audit_app, "report", "adaptive_beta.cli.report", "report"),
        (store_app, "load", "adaptive_beta.cli.store", "load"),
        (store_app, "info", "adaptive_beta.cli.store", "info"),
    ]
    for sub, name, module, func in table:
        sub.command(name)(getattr(importlib.import_module(module), func))


_register()


def main() -> None:
    from adaptive_beta.models.noise import quiet_libraries

    quiet_libraries()
    sys.exit(run(sys.argv[1:]))


def run(argv: list[str]) -> int:
    """`abeta ARGV` -> exit code. One error style: a usage error (unknown option, missing value),
    a data error and an operator error are each one `error: ...` line and exit 2; click's own
    "Error: No such option" box is reworded here, with the command's help hint."""
    from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer vendors click

    try:
        rc = app(args=argv, prog_name="abeta", standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `abeta data`: the group's help, as before
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message(), err=True)
        return 2
    except UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx is not None else "abeta"
        typer.secho(f"error: {exc.format_message()} (see '{cmd} --help')", fg=typer.colors.RED, err=True)
        return 2
    except DataError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        return 2
    except typer.Abort:
        typer.secho("error: aborted", fg=typer.colors.RED, err=True)
        return 1
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    main()
