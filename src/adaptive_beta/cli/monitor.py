"""`abeta monitor` (drift, forecast error, beta shifts; exit 0 ok / 1 alert / 2 bad input) and
`abeta recalibrate` (the same, then the retrain policy)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

MODEL_HELP = "Bundle folder or models:/NAME@ALIAS."


def _load_model(cls, path: Path | None, section: str | None = None):
    if path is None:
        return cls()
    raw = json.loads(path.read_text()) if path.suffix == ".json" else _toml(path)
    if section:
        raw = raw.get(section, {})
    return cls.model_validate(raw)


def _toml(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text())


def _report(model, audit_db, data, since, until, reference_data, reference, save_reference, config):
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.resolve import resolve_bundle
    from adaptive_beta.training.monitor import MonitorConfig, reference_from_data, run_monitor
    from adaptive_beta.training.monitor import save_reference as save

    cfg = _load_model(MonitorConfig, config, "monitor")
    rep = run_monitor(
        model, cfg, audit_db, data, since, until, reference_data=reference_data, reference_file=reference
    )
    if save_reference is not None:
        from adaptive_beta.models.data.loaders import load_dataset

        bundle = load_bundle(resolve_bundle(model))
        src = reference_data or bundle.meta.data_source
        save(reference_from_data(bundle, load_dataset(src), cfg.n_bins), save_reference, bundle)
    return rep


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def monitor(
    model: str = typer.Option("models:/adaptive-beta@champion", "--model", help=MODEL_HELP),
    audit_db: str | None = typer.Option(
        None, "--audit-db", help="Audit log (path or URL) of served forecasts."
    ),
    data: str | None = typer.Option(
        None, "--data", help="Dataset folder/manifest: recent window and realised betas."
    ),
    since: str | None = typer.Option(
        None, "--since", help="Window start (ISO, UTC); default: --until minus 90d."
    ),
    until: str | None = typer.Option(None, "--until", help="Window end (ISO, UTC); default: the last bar."),
    out: Path | None = typer.Option(None, "--out", help="Write the report as JSON here."),
    reference_data: str | None = typer.Option(
        None, "--reference-data", help="Training data if the bundle's data_source is elsewhere."
    ),
    reference: Path | None = typer.Option(None, "--reference", help="Saved training reference (JSON)."),
    save_reference: Path | None = typer.Option(
        None, "--save-reference", help="Save the training reference here."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="TOML/JSON with a [monitor] section (MonitorConfig)."
    ),
) -> None:
    """Compare recent features with training (PSI), forecasts with realised betas; exit 1 on alert."""
    from adaptive_beta.models.data.schema import DataError

    try:
        rep = _report(model, audit_db, data, since, until, reference_data, reference, save_reference, config)
    except (DataError, ValueError, FileNotFoundError) as exc:
        _fail(exc)
    typer.echo(rep.table())
    if out is not None:
        rep.write_json(out)
    raise typer.Exit(rep.exit_code)


def recalibrate(
    model: str = typer.Option("models:/adaptive-beta@champion", "--model", help=MODEL_HELP),
    data: str = typer.Option(
        ..., "--data", help="Dataset folder/manifest: monitoring window and retraining data."
    ),
    audit_db: str | None = typer.Option(
        None, "--audit-db", help="Audit log of served forecasts (else the data)."
    ),
    since: str | None = typer.Option(None, "--since", help="Monitoring window start (ISO, UTC)."),
    until: str | None = typer.Option(None, "--until", help="'Now': window end and last training bar."),
    train_config: Path | None = typer.Option(None, "--train-config", help="TrainConfig file of the retrain."),
    config: Path | None = typer.Option(
        None, "--config", help="TOML/JSON with [monitor] (MonitorConfig) and [policy] (RecalibrationPolicy)."
    ),
    out: Path | None = typer.Option(None, "--out", help="Write the monitoring report as JSON here."),
) -> None:
    """Monitor, then retrain/register/gate when the policy says so; exit 0 nothing to do, 1 retrained, 2 bad input."""
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.data.schema import DataError
    from adaptive_beta.training.recalibrate import RecalibrationPolicy
    from adaptive_beta.training.recalibrate import recalibrate as run_policy
    from adaptive_beta.training.train_config import load_train_config

    try:
        policy = _load_model(RecalibrationPolicy, config, "policy")
        rep = _report(model, audit_db, data, since, until, None, None, None, config)
        tcfg = load_train_config(train_config, data=data)
        panel = load_dataset(data)
    except (DataError, ValueError, FileNotFoundError) as exc:
        _fail(exc)
    typer.echo(rep.table())
    if out is not None:
        rep.write_json(out)
    outcome = run_policy(rep, policy, tcfg, panel=panel, until=until)
    d = outcome.decision
    typer.echo(
        ("RETRAIN: " if d.retrain else "no retrain: ")
        + ("; ".join(d.reasons) or "nothing crossed a threshold")
    )
    typer.echo(f"monitoring run {outcome.monitoring_run_id} (experiment adaptive-beta-monitoring)")
    if outcome.error:
        typer.secho(f"retrain failed: {outcome.error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    if d.retrain:
        typer.echo(
            f"registered v{outcome.version} as challenger; gate: "
            + ("promoted: " if outcome.promoted else "not promoted: ")
            + str(outcome.gate_reason)
        )
    raise typer.Exit(1 if d.retrain else 0)
