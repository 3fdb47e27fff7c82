"""Where a bundle lives: a folder path, an MLflow registry URI (`models:/name@alias`), or the
BentoML model store (`bento:NAME[:VERSION]`, what a Bento serves: serving/bento_store.py).

A registered version is an MLflow pyfunc model (`adaptive_beta.models.bundle.pyfunc`) holding the
bundle folder at `artifacts/bundle/`; versions registered before that are the bare folder.  Both
resolve to the bundle folder, so the service loads the same bytes either way.

Torch-free and tiny on purpose: the serving process resolves its bundle with this and must not
import training code.  MLflow is imported lazily and only for registry URIs.
"""

from __future__ import annotations

import re
from pathlib import Path

from adaptive_beta.models.data.schema import DataError
from adaptive_beta.models.settings import get_settings

BENTO_SCHEME = "bento:"  # bento:adaptive-beta[:VERSION]: a bundle in BentoML's model store
MODEL_BUNDLE_DIR = "artifacts/bundle"  # where an MLflow model made by `pyfunc.log_bundle_model` keeps it


def default_tracking_uri(create: bool = True) -> str:
    """`MLFLOW_TRACKING_URI` if set, else SQLite inside the project's `mlruns/` folder
    (`ABETA_MLRUNS`, default under `ABETA_HOME`: adaptive_beta.models.settings); `create` makes the folder."""
    settings = get_settings()
    if create and not settings.mlflow_tracking_uri:
        Path(settings.mlruns).mkdir(parents=True, exist_ok=True)
    return settings.tracking_uri()


MODELS_URI = re.compile(r"^models:/(?P<name>[^/@\s]+)(?:@(?P<alias>[A-Za-z0-9_\-]+)|/(?P<version>\d+))$")


def check_tracking_server(uri: str, timeout_s: float = 5.0) -> None:
    """DataError (one line) unless the MLflow tracking server at an http(s) `uri` answers GET /health.

    Other URIs pass.  Why: MLflow's client retries an unreachable server with backoff for minutes,
    then says something that reads like "no such model" (or, for a training run, fails after the
    walk-forward).  A command that needs the store asks first and names the URL it tried.
    """
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    health = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout_s) as resp:  # noqa: S310 (http(s) only)
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"cannot reach the MLflow tracking server {uri} (MLFLOW_TRACKING_URI): GET {health}: {reason}; "
            "start it (docs/topology.md) or point MLFLOW_TRACKING_URI at a running one"
        ) from None
    if status != 200:
        raise DataError(
            f"the MLflow tracking server {uri} (MLFLOW_TRACKING_URI) is not healthy: GET {health} answered {status}"
        )


def browse_hint(uri: str) -> str:
    """How a user looks at the runs of store `uri`: the server's own web UI, or `mlflow ui` on a local store."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser"
    return f"mlflow ui --backend-store-uri {uri}"


def require_store(uri: str | None = None) -> str:
    """The tracking URI (default: the settings'), after checking that a SQLite store exists or that
    a tracking server answers.

    Nothing is created: a DataError names the store looked for and how to choose or make one.
    """
    uri = uri or default_tracking_uri(create=False)
    check_tracking_server(uri)
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise DataError(
                f"no MLflow store at {path}: train a model first (abeta train), or point "
                "MLFLOW_TRACKING_URI (or ABETA_MLRUNS / ABETA_HOME) at an existing store"
            )
    return uri


def check_model(uri: str) -> None:
    """Raise DataError (one line) unless `uri` names a bundle: a folder with manifest.json, or a
    registered `models:/NAME@ALIAS` / `models:/NAME/VERSION` in an existing store.  Nothing is
    downloaded or created; a missing `@champion` names the `@challenger` and how to promote it."""
    if uri.startswith(BENTO_SCHEME) or ("://" not in uri and not uri.startswith(("models:/", "runs:/"))):
        resolve_bundle(uri)
        return
    store = require_store()
    if not uri.startswith("models:/"):
        return  # runs:/ and other artifact URIs: resolved (and checked) when loaded
    m = MODELS_URI.match(uri)
    if m is None:
        raise DataError(
            f"malformed model URI {uri!r}: expected a bundle folder, models:/NAME@ALIAS or models:/NAME/VERSION"
        )
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client, name = MlflowClient(tracking_uri=store), m["name"]
    try:
        aliases = dict(client.get_registered_model(name).aliases or {})
    except MlflowException:
        raise DataError(f"no registered model {name!r} in {store} (abeta models list --name NAME)") from None
    if m["version"] is not None:
        try:
            client.get_model_version(name, m["version"])
        except MlflowException:
            raise DataError(f"model {name!r} has no version {m['version']} in {store}") from None
    elif m["alias"] not in aliases:
        have = ", ".join(f"v{v} is @{a}" for a, v in sorted(aliases.items())) or "no version has an alias"
        how = ""
        if m["alias"] == "champion" and "challenger" in aliases:
            how = f": promote it with `abeta promote --name {name}` or serve it with --model models:/{name}@challenger"
        raise DataError(f"model {name!r} has no @{m['alias']} in {store} ({have}){how}")


def resolve_bundle(uri_or_path: str | Path) -> Path:
    """Local folder of the bundle named by a path, `models:/NAME@ALIAS`, `models:/NAME/VERSION` or `runs:/`."""
    text = str(uri_or_path)
    if text.startswith(BENTO_SCHEME):
        return bento_model(text)[0]
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


def bento_model(uri: str):
    """(bundle folder, bentoml.Model) of `bento:NAME[:VERSION]` in the current BentoML model store
    (inside a Bento: the Bento's own models).  A DataError names the tag and how to import one.
    bentoml is imported only here: the rest of this module must not need it."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    tag = uri.removeprefix(BENTO_SCHEME)
    try:
        model = bentoml.models.get(tag)
    except BentoMLException as exc:
        raise DataError(
            f"no BentoML model {tag!r} in the model store ({exc}); import one with "
            "`abeta models export-bento --model models:/NAME@ALIAS`"
        ) from None
    path = model_bundle(Path(model.path))
    if path is None:
        raise DataError(f"BentoML model {model.tag} at {model.path} holds no bundle manifest.json")
    return path, model
