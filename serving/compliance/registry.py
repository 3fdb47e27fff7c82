"""Champion history from the MLflow registry, read torch-free (serving never imports training/).

The training side (training/registry.py) keeps a `champion_history` tag on the registered model:
a JSON list of {version, from, until, reason}.  We read that tag with MlflowClient directly.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)
HISTORY_TAG = "champion_history"


def model_name() -> str:
    from adaptive_beta.models.settings import get_settings

    return get_settings().registered_model  # ABETA_REGISTERED_MODEL


def champion_history(name: str | None = None, tracking_uri: str | None = None) -> list[dict] | None:
    """The tag's entries (oldest first), or None if there is no registry or no such model."""
    try:
        from mlflow import MlflowClient

        from adaptive_beta.models.bundle.resolve import check_tracking_server, default_tracking_uri

        uri = tracking_uri or default_tracking_uri()
        check_tracking_server(uri, timeout_s=2.0)  # a server that is down: no page waits minutes of retries
        client = MlflowClient(tracking_uri=uri)
        rm = client.get_registered_model(name or model_name())
    except Exception as exc:  # no store, no model, mlflow missing: informational only
        log.info("no registry information: %s", exc)
        return None
    try:
        hist = json.loads(rm.tags.get(HISTORY_TAG, "[]"))
    except ValueError:
        log.warning("registered model %s: tag %s is not JSON", rm.name, HISTORY_TAG)
        return None
    return [h for h in hist if isinstance(h, dict)]
