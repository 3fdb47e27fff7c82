"""`abeta train`, `abeta export`, `abeta promote`, `abeta models list`."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

RAY_HELP = (
    "Run the work (fits, scoring) on a Ray cluster: auto (one started with `ray start --head`), local (a private "
    "one for this command) or HOST:PORT; default ABETA_RAY_ADDRESS, unset = in-process. "
    "Same results either way."
)


def train(
    config: Path | None = typer.Option(
        None, "--config", help="TOML/YAML/JSON TrainConfig (defaults run as is)."
    ),
    data: str | None = typer.Option(
        None, "--data", help="Dataset folder or manifest; default: the built-in simulated market."
    ),
    scorecard_out: Path | None = typer.Option(
        None, "--scorecard-out", help="Write the walk-forward scorecard (JSON records) here."
    ),
    arch: str | None = typer.Option(None, "--arch", help="Override model.arch: gru | transformer | mlp."),
    max_folds: int | None = typer.Option(None, "--max-folds", help="Override walk_forward.max_folds."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
    ray_address: str | None = typer.Option(None, "--ray-address", help=RAY_HELP),
) -> None:
    """Walk-forward train and score vs every baseline, fit the final model, export, log, register."""
    from adaptive_beta.models.bundle.resolve import check_tracking_server, default_tracking_uri
    from adaptive_beta.training.cluster import resolve_address
    from adaptive_beta.training.train_config import load_train_config, with_cli_overrides
    from adaptive_beta.training.train_run import train as run_train

    address = resolve_address(ray_address)  # a bad address stops here (exit 2), before any work
    check_tracking_server(default_tracking_uri(create=False))  # before minutes of training, not after
    cfg = load_train_config(config, data=data)
    cfg = with_cli_overrides(cfg, arch, max_folds, quiet)
    result = run_train(cfg, scorecard_out=scorecard_out, ray_address=address)
    typer.echo(result.scorecard.table())
    typer.echo(f"run id: {result.run_id}")
    if result.version:
        typer.echo(f"registered {cfg.model_name} v{result.version} (challenger)")
    if result.promotion is not None:
        typer.echo(
            ("champion: " if result.promotion.promoted else "not promoted: ") + result.promotion.reason
        )
    typer.echo(f"took {result.timings.get('total_s', 0):.0f}s; look at it: {_uri()}")


def _uri() -> str:
    from adaptive_beta.models.bundle.resolve import browse_hint, default_tracking_uri

    return browse_hint(default_tracking_uri())


def export(
    model: str = typer.Option(
        "models:/adaptive-beta@champion", "--model", help="models:/NAME@ALIAS, runs:/ or a folder."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder to write the bundle into (must not exist or be empty)."
    ),
) -> None:
    """Copy a registered bundle to a folder (verified against its sha256 manifest)."""
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.resolve import resolve_bundle

    src = resolve_bundle(model)
    load_bundle(src)  # verifies hashes before anything is written
    if out.exists() and any(out.iterdir()):
        typer.secho(f"error: {out} exists and is not empty", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    typer.echo(f"bundle {model} -> {out}")


def promote(
    name: str = typer.Option("adaptive-beta", "--name"),
    version: str | None = typer.Option(None, "--version", help="Default: the challenger alias."),
) -> None:
    """Move `champion` to the challenger only if it beats the champion and the best baseline.

    Exit 0: promoted; 1: not promoted (the gate refused, or no challenger); 2: no such store,
    model or version (one line)."""
    from adaptive_beta.models.bundle.resolve import require_store
    from adaptive_beta.training.registry import promote as run_promote

    require_store()  # never create an empty store to promote in
    d = run_promote(name, version)
    typer.echo(("promoted" if d.promoted else "not promoted") + f" v{d.challenger}: {d.reason}")
    if not d.promoted:
        raise typer.Exit(1)


def models_list(name: str = typer.Option("adaptive-beta", "--name")) -> None:
    """Registered versions with aliases and headline metrics, newest first (first line: the store read).

    Exit 2 with one line when the store does not exist (it is never created here)."""
    from adaptive_beta.models.bundle.resolve import require_store
    from adaptive_beta.training.registry import champion_history, list_versions

    typer.echo(f"store: {require_store()}")
    rows = list_versions(name)
    if not rows:
        typer.echo(f"no versions registered under {name!r}")
        return
    typer.echo(f"{'version':>7}  {'aliases':<22} {'created':<26} headline MSE (model / best baseline)")
    for r in rows:
        head = ", ".join(
            f"{b} {m:.5f}/{r['best_baseline_mse'].get(b, float('nan')):.5f}"
            for b, m in r["model_mse"].items()
        )
        typer.echo(f"{r['version']:>7}  {','.join(r['aliases']):<22} {r['created']:<26} {head}")
    hist = champion_history(name)
    if hist:
        typer.echo("champion history:")
        for h in hist:
            typer.echo(f"  v{h['version']}: {h['from']} .. {h['until'] or 'now'}  ({h['reason']})")
