"""The `abeta` command line: one entry point for data, evaluation, training, serving and audit.

Each command lives in a small `cmd_*.py` module next to the code it drives and keeps heavy
imports (torch, mlflow, bentoml) inside the function, so `abeta data ...` starts fast.
Errors for people (`DataError`, `ValueError` from configs) print one line and exit 2.
"""

from __future__ import annotations

import sys

import typer

from models.schema import DataError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Adaptive Beta: forward beta of crypto perps."
)
data_app = typer.Typer(no_args_is_help=True, help="Market data: simulate, validate, features.")
evaluate_app = typer.Typer(no_args_is_help=True, help="Walk-forward scorecards: baselines and models.")
models_app = typer.Typer(no_args_is_help=True, help="Registered models.")
audit_app = typer.Typer(no_args_is_help=True, help="The audit log: verify, export, report.")
app.add_typer(data_app, name="data")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(models_app, name="models")
app.add_typer(audit_app, name="audit")


def _register() -> None:
    """Attach commands from their modules (each module owns its command's options)."""
    import importlib

    table = [
        (data_app, "simulate", "training.cmd_simulate", "simulate"),
        (data_app, "validate", "training.cmd_data", "validate"),
        (data_app, "features", "training.cmd_features", "features"),
        (evaluate_app, "baselines", "training.cmd_evaluate", "baselines"),
        (evaluate_app, "model", "training.cmd_evaluate_model", "model"),
        (app, "train", "training.cmd_train", "train"),
        (app, "export", "training.cmd_train", "export"),
        (app, "promote", "training.cmd_train", "promote"),
        (models_app, "list", "training.cmd_train", "models_list"),
        (app, "run", "training.cmd_run", "run"),
        (app, "backtest", "training.cmd_backtest", "backtest"),
        (app, "stress", "training.cmd_stress", "stress"),
        (app, "monitor", "training.cmd_monitor", "monitor"),
        (app, "recalibrate", "training.cmd_monitor", "recalibrate"),
        (app, "serve", "serving.cmd_serve", "serve"),
        (audit_app, "verify", "serving.cmd_audit", "verify"),
        (audit_app, "export", "serving.cmd_audit", "export"),
        (audit_app, "report", "serving.cmd_report", "report"),
    ]
    for sub, name, module, func in table:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue  # command not built yet
            raise
        if hasattr(mod, func):
            sub.command(name)(getattr(mod, func))


_register()


def main() -> None:
    try:
        app()
    except DataError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
