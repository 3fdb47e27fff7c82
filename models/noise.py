"""Library chatter kept off the console, in one place (`quiet_libraries`, called by `abeta`).

Why: a person running `abeta train` should see our progress lines and real problems, not
MLflow's "Creating initial MLflow database tables" on every new store, its "Validating input
example" and artifact-download progress bars while a model is logged, or hmmlearn's "Model is not
converging" from the regime baseline's EM (a baseline whose fit quality the scorecard reports).
The loggers are lowered, not removed; `ABETA_LIBRARY_LOGS=1` leaves every library as it set itself.
"""

from __future__ import annotations

import logging
import os

# logger -> the lowest level that still reaches the console
LEVELS = {
    "mlflow.store.db.utils": logging.WARNING,  # "Creating initial MLflow database tables..."
    "mlflow.store.model_registry": logging.WARNING,
    "mlflow.pyfunc": logging.WARNING,  # "Validating input example against model signature"
    "mlflow.models.model": logging.WARNING,
    "alembic": logging.WARNING,  # schema migrations of a new SQLite store
    "hmmlearn": logging.ERROR,  # "Model is not converging" from EM on short samples
}
ENV = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # tqdm bars on every artifact download


def quiet_libraries() -> None:
    """Apply `LEVELS` and `ENV` (an explicit environment setting wins); idempotent."""
    from adaptive_beta.models.settings import SettingsError, get_settings

    try:
        loud = get_settings().library_logs
    except SettingsError:  # reported by whoever needs the bad setting, with its one line
        loud = False
    if loud:
        return
    for name, level in LEVELS.items():
        logging.getLogger(name).setLevel(level)
    for key, value in ENV.items():
        os.environ.setdefault(key, value)
