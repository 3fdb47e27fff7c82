"""`abeta run`: the main job on the built-in default, end to end.

simulated market -> walk-forward train and scorecard vs every baseline -> final fit -> ONNX
bundle -> MLflow run -> registry (`challenger`, promoted to `champion` when it wins) -> start
the BentoML service on 127.0.0.1 -> one /forecast and one /explain built from GET /model ->
stop the service, and print where to look.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def run(
    config: Path | None = typer.Option(
        None, "--config", help="TrainConfig file (default: built-in defaults)."
    ),
    data: str | None = typer.Option(None, "--data", help="Dataset; default: the built-in simulated market."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve one forecast at the end."),
    audit_db: str | None = typer.Option(
        None, "--audit-db", help="Audit log of the served forecast (default: ABETA_AUDIT_DB)."
    ),
    out: Path = typer.Option(Path("out"), "--out", help="Folder for the scorecard JSON and the service log."),
) -> None:
    """Simulate -> train -> compare -> export -> register -> serve a forecast."""
    import httpx

    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.settings import get_settings
    from adaptive_beta.serving.client import LocalService, forecast_request, raw_factor_series
    from adaptive_beta.training.pipeline import ensure_simulated
    from adaptive_beta.training.train_config import load_train_config
    from adaptive_beta.training.train_run import train

    audit_db = audit_db or str(get_settings().audit_db)
    cfg = load_train_config(config, data=data)
    data_path = cfg.data or str(ensure_simulated(cfg, cfg.progress))
    cfg = cfg.model_copy(update={"data": data_path})
    out.mkdir(parents=True, exist_ok=True)
    result = train(cfg, scorecard_out=out / "scorecard.json")
    typer.echo(result.scorecard.table())
    typer.echo(f"MLflow run {result.run_id}; registered {cfg.model_name} v{result.version}")
    if result.promotion is not None:
        typer.echo(
            ("champion: " if result.promotion.promoted else "not promoted (kept as challenger): ")
            + result.promotion.reason
        )
    if not serve:
        return
    alias = "champion" if result.promotion is not None and result.promotion.promoted else "challenger"
    model_uri = f"models:/{cfg.model_name}@{alias}"
    typer.echo(f"serving {model_uri} on 127.0.0.1 ...")
    panel = load_dataset(data_path)
    with LocalService(model_uri, audit_db, out / "service.log") as svc:
        info = httpx.get(svc.url + "/model", headers=svc.headers(), timeout=30).json()
        symbols = [s for s in panel.symbols if s not in info["required_history"]["series"]][:2]
        body = forecast_request(panel, info["required_history"], symbols, raw_factor_series(data_path))
        r = httpx.post(svc.url + "/forecast", json=body, headers=svc.headers(), timeout=60)
        if r.status_code != 200:
            typer.secho(
                f"forecast failed: HTTP {r.status_code}: {r.text[:500]}", fg=typer.colors.RED, err=True
            )
            raise typer.Exit(1)
        fc = r.json()
        (out / "forecast.json").write_text(json.dumps(fc, indent=2))
        for a in fc["forecasts"] if "forecasts" in fc else fc.get("assets", []):
            typer.echo(json.dumps(a, indent=None)[:600])
        e = httpx.post(svc.url + "/explain", json=body, headers=svc.headers(), timeout=60)
        typer.echo(f"/explain: HTTP {e.status_code}; full responses in {out}/forecast.json")
        if e.status_code == 200:
            (out / "explain.json").write_text(json.dumps(e.json(), indent=2))
    typer.echo(
        f"done. Look at the runs: {_uri()}\nverify the audit log with: abeta audit verify --db {audit_db}"
    )


def _uri() -> str:
    from adaptive_beta.models.bundle.resolve import browse_hint, default_tracking_uri

    return browse_hint(default_tracking_uri())
