"""Where a bundle lives: a folder path, or an MLflow registry URI (`models:/name@alias`).

A registered version is an MLflow pyfunc model (`adaptive_beta.models.bundle.pyfunc`) holding the
bundle folder at `artifacts/bundle/`; versions registered before that are the bare folder.  Both
resolve to the bundle folder, so the service loads the same bytes either way.

Torch-free and tiny on purpose: the serving process resolves its bundle with this and must not
import training code.  MLflow is imported lazily and only for registry URIs.
"""

from __future__ import annotations

import os
from pathlib import Path

from adaptive_beta.models.data.schema import DataError

MODEL_BUNDLE_DIR = "artifacts/bundle"  # where an MLflow model made by `pyfunc.log_bundle_model` keeps it


def default_tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else SQLite inside the project's `mlruns/` folder."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    root = Path(os.environ.get("ABETA_MLRUNS", "mlruns")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def resolve_bundle(uri_or_path: str | Path) -> Path:
    """Local folder of the bundle named by a path, `models:/NAME@ALIAS`, `models:/NAME/VERSION` or `runs:/`."""
    text = str(uri_or_path)
    if "://" not in text and not text.startswith(("models:/", "runs:/")):
        path = model_bundle(Path(text))
        if path is None:
            raise DataError(
                f"no model bundle at {text} (expected a folder with manifest.json, or an MLflow model "
                f"with {MODEL_BUNDLE_DIR}/manifest.json)"
            )
        return path
    import mlflow

    mlflow.set_tracking_uri(default_tracking_uri())
    try:
        local = Path(mlflow.artifacts.download_artifacts(text))
    except Exception as exc:  # MlflowException, missing alias, unreachable store
        raise DataError(f"cannot resolve model {text!r} in {mlflow.get_tracking_uri()}: {exc}") from exc
    path = model_bundle(local)
    if path is not None:
        return path
    nested = [p.parent for p in local.rglob("manifest.json")]
    if len(nested) == 1:
        return nested[0]
    raise DataError(f"model {text!r} resolved to {local}, which holds no bundle manifest.json")


def model_bundle(path: Path) -> Path | None:
    """The bundle folder at `path`: the folder itself (a bare bundle) or an MLflow model's
    `artifacts/bundle/`; None if neither."""
    if (path / "manifest.json").is_file():
        return path
    if (path / "MLmodel").is_file() and (path / MODEL_BUNDLE_DIR / "manifest.json").is_file():
        return path / MODEL_BUNDLE_DIR
    return None
