"""`abeta tune`: Optuna search over the model config on validation blocks; writes the best as TOML."""

from __future__ import annotations

from pathlib import Path

import typer

from adaptive_beta.cli.train import RAY_HELP


def tune(
    config: Path | None = typer.Option(
        None, "--config", help="TrainConfig the search starts from (data, walk-forward, fixed model fields)."
    ),
    data: str | None = typer.Option(
        None, "--data", help="Dataset folder or manifest; default: the built-in simulated market."
    ),
    n_trials: int | None = typer.Option(20, "--n-trials", min=1, help="Trials to run in this invocation."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=1, help="Stop starting trials after this many seconds."
    ),
    storage: str | None = typer.Option(
        None, "--storage", help="Study storage (SQLAlchemy URL); default: optuna.db beside the MLflow store."
    ),
    study_name: str = typer.Option("adaptive-beta-tune", "--study-name", help="Resumed if it exists."),
    out: Path = typer.Option(
        Path("tuned.toml"), "--out", help="Where to write the best config (abeta train --config takes it)."
    ),
    max_folds: int | None = typer.Option(None, "--max-folds", help="Override walk_forward.max_folds."),
    seed: int = typer.Option(0, "--seed", help="Sampler seed."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help=RAY_HELP + " With it the trials are Ray Tune trials (Optuna search, ASHA early stopping).",
    ),
) -> None:
    """Search the model config (Optuna, pruned per epoch) on pooled validation beta MSE; test blocks unused."""
    from adaptive_beta.models.bundle.resolve import check_tracking_server, default_tracking_uri
    from adaptive_beta.training.cluster import resolve_address
    from adaptive_beta.training.train_config import load_train_config, with_cli_overrides
    from adaptive_beta.training.tune import TuneConfig, default_storage, run_tune

    address = resolve_address(ray_address)  # a bad address stops here (exit 2), before any work
    check_tracking_server(default_tracking_uri(create=False))  # before the trials, not after
    cfg = load_train_config(config, data=data)
    cfg = with_cli_overrides(cfg, max_folds=max_folds, quiet=quiet)
    settings = TuneConfig(
        n_trials=n_trials, timeout=timeout, storage=storage, study_name=study_name, seed=seed
    )
    if address:
        from adaptive_beta.training.cluster_tune import run_tune_ray

        res = run_tune_ray(cfg, settings, address, out=out)
        where = f"on Ray at {address}"
    else:
        res = run_tune(cfg, settings, out=out)
        where = f"in the study {study_name!r} at {storage or default_storage()}"
    typer.echo(
        f"best pooled validation beta MSE {res.best_value:.6f} "
        f"({res.n_complete} complete, {res.n_pruned} pruned of {res.n_trials} trials {where})"
    )
    typer.echo(f"best params: {res.best_params}")
    typer.echo(f"wrote {res.config_path}; train with: abeta train --config {res.config_path}")
