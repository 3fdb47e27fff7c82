"""`abeta serve`: run the prediction service (BentoML) on a bundle folder or a registered model.

Before BentoML starts, the settings (and the market-data store URL), the API keys, the port and
the model are checked; a problem is one line on stderr and exit 2 (`preflight`).  Then this process *becomes* `bentoml serve`
(`os.execve`, same pid): a signal sent to `abeta serve` reaches the server itself, and no
`bentoml serve` is left behind, adopted by init, when the command is killed.  The workers stop
when the server is gone, even after `kill -9` of its process group (serving/parent_watch.py).
"""

from __future__ import annotations

import os
import socket
import sys

import typer

from adaptive_beta.models.data.schema import DataError


def check_port(host: str, port: int) -> None:
    """DataError unless `host:port` can be bound now (BentoML binds it a moment later)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            s.bind((host, port))
        except OSError as exc:
            raise DataError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc} (another server there? choose another --port)"
            ) from None


def preflight(host: str, port: int) -> None:
    """Settings, API keys, port, model: the first problem as a DataError (one line, exit 2)."""
    from adaptive_beta.models.bundle.resolve import check_model
    from adaptive_beta.models.database import sqlite_file
    from adaptive_beta.models.settings import get_settings
    from adaptive_beta.serving.auth import AuthConfigError, KeyStore

    settings = get_settings()  # SettingsError names the variable
    try:
        sqlite_file(str(settings.market_db), "market-data store")
    except ValueError as exc:
        raise DataError(f"ABETA_MARKET_DB: {exc}") from None
    try:
        keys = KeyStore.from_env()
    except (AuthConfigError, OSError) as exc:
        raise DataError(f"API keys: {exc}") from None
    if len(keys) == 0:
        typer.secho("warning: no API keys configured (ABETA_API_KEYS); every API call will get 401", err=True)
    check_port(host, port)
    check_model(settings.model)


def serve(
    model: str | None = typer.Option(
        None,
        help="bundle folder or models:/NAME@ALIAS (default: ABETA_MODEL, else models:/adaptive-beta@champion)",
    ),
    port: int = typer.Option(3000, help="TCP port"),
    host: str = typer.Option("127.0.0.1", help="interface to bind (0.0.0.0 for all)"),
    audit_db: str | None = typer.Option(
        None, help="audit log: path, sqlite:///path or postgresql://... (default: ABETA_AUDIT_DB)"
    ),
    workers: int | None = typer.Option(
        None, help="worker processes (default: ABETA_WORKERS, 1; workers x ORT threads <= cores)"
    ),
    anchor_file: str | None = typer.Option(
        None,
        help="signed anchors of the audit chain (default: AUDIT_DB.anchors; needed for PostgreSQL)",
    ),
) -> None:
    """Serve /forecast, /explain, /hedge and /model; API keys from ABETA_API_KEYS or ABETA_API_KEYS_FILE.

    Exit 2 with one line if a setting, an API key, the port or the model is wrong."""
    options = {"ABETA_MODEL": model, "ABETA_AUDIT_DB": audit_db, "ABETA_AUDIT_ANCHORS": anchor_file}
    options["ABETA_WORKERS"] = None if workers is None else str(workers)
    os.environ.update({k: v for k, v in options.items() if v is not None})  # one validation for both
    preflight(host, port)
    cmd = [sys.executable, "-m", "bentoml", "serve", "adaptive_beta.serving.service:AdaptiveBeta"]
    cmd += ["--host", host, "--port", str(port)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, cmd, dict(os.environ))
