"""Where a bundle lives: a folder path, or an MLflow registry URI (`models:/name@alias`).

Torch-free and tiny on purpose: the serving process resolves its bundle with this and must not
import training code.  MLflow is imported lazily and only for registry URIs.
"""

from __future__ import annotations

from pathlib import Path

from adaptive_beta.models.data.schema import DataError
from adaptive_beta.models.settings import get_settings


def default_tracking_uri(create: bool = True) -> str:
    """`MLFLOW_TRACKING_URI` if set, else SQLite inside the project's `mlruns/` folder
    (`ABETA_MLRUNS`, default under `ABETA_HOME`: adaptive_beta.models.settings); `create` makes the folder."""
    settings = get_settings()
    if create and not settings.mlflow_tracking_uri:
        Path(settings.mlruns).mkdir(parents=True, exist_ok=True)
    return settings.tracking_uri()


def resolve_bundle(uri_or_path: str | Path) -> Path:
    """Local folder of the bundle named by a path, `models:/NAME@ALIAS`, `models:/NAME/VERSION` or `runs:/`."""
    text = str(uri_or_path)
    if "://" not in text and not text.startswith(("models:/", "runs:/")):
        path = Path(text)
        if not (path / "manifest.json").is_file():
            raise DataError(f"no model bundle at {path} (expected a folder with manifest.json)")
        return path
    import mlflow

    mlflow.set_tracking_uri(default_tracking_uri())
    try:
        local = mlflow.artifacts.download_artifacts(text)
    except Exception as exc:  # MlflowException, missing alias, unreachable store
        raise DataError(f"cannot resolve model {text!r} in {mlflow.get_tracking_uri()}: {exc}") from exc
    path = Path(local)
    if not (path / "manifest.json").is_file():
        nested = [p.parent for p in path.rglob("manifest.json")]
        if len(nested) == 1:
            return nested[0]
        raise DataError(f"model {text!r} resolved to {path}, which holds no bundle manifest.json")
    return path
