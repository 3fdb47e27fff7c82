"""`abeta serve`: run the prediction service (BentoML) on a bundle folder or a registered model."""

from __future__ import annotations

import os
import subprocess
import sys

import typer


def serve(
    model: str = typer.Option("models:/adaptive-beta@champion", help="bundle folder or models:/NAME@ALIAS"),
    port: int = typer.Option(3000, help="TCP port"),
    host: str = typer.Option("127.0.0.1", help="interface to bind (0.0.0.0 for all)"),
    audit_db: str = typer.Option(
        "audit/audit.db", help="audit log: path, sqlite:///path or postgresql://..."
    ),
    workers: int = typer.Option(1, help="worker processes (workers x ORT threads <= cores)"),
    anchor_file: str | None = typer.Option(
        None,
        help="signed anchors of the audit chain (default: AUDIT_DB.anchors; needed for PostgreSQL)",
    ),
) -> None:
    """Serve /forecast, /explain, /hedge and /model; API keys from ABETA_API_KEYS or ABETA_API_KEYS_FILE."""
    from adaptive_beta.models.settings import get_settings

    settings = get_settings()
    if not settings.api_keys.get_secret_value() and settings.api_keys_file is None:
        typer.secho("warning: no API keys configured (ABETA_API_KEYS); every API call will get 401", err=True)
    env = dict(os.environ)
    env.update({"ABETA_MODEL": model, "ABETA_AUDIT_DB": audit_db, "ABETA_WORKERS": str(workers)})
    if anchor_file is not None:
        env["ABETA_AUDIT_ANCHORS"] = anchor_file
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "adaptive_beta.serving.service:AdaptiveBeta",
        "--host",
        host,
        "--port",
        str(port),
    ]
    raise typer.Exit(subprocess.call(cmd, env=env))
