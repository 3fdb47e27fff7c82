"""Shared test fixtures.

Real data lives in ../shared/data/real next to the clone (never copied into the project); tests
that need it use the `real_data_dir` fixture, which skips with the reason where it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("ABETA_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))


# Modules whose fixtures train networks, run the walk-forward or execute notebooks: the end-to-end
# lane. Everything else is the fast lane (`pytest -m "not slow"`, under 90 s on 2 cores).
SLOW_MODULES = {
    "tests/test_notebooks.py",
    "tests/models/test_baseline_pool.py",  # a local process pool
    "tests/models/test_feature_pool.py",  # a local process pool
    "tests/training/test_train_e2e.py",
    "tests/training/test_recalibrate.py",
    "tests/training/test_cmd_backtest.py",
    "tests/training/test_export.py",
    "tests/training/test_fit.py",
    "tests/training/test_tune.py",
    "tests/training/test_cmd_fetch.py",  # a local HTTP server of recorded market data
    "tests/training/test_mlflow_model.py",
    "tests/serving/test_audit_anchors_service.py",  # a real server
    "tests/serving/test_operator_errors.py",  # the CLI in subprocesses, a real port
    "tests/serving/test_http_client.py",  # a real server
    "tests/models/test_live_state.py",  # trains a bundle
    "tests/training/test_cmd_predict.py",  # trains a bundle
    "tests/serving/test_bento_build.py",  # abeta train, bentoml build and serve in subprocesses
    "tests/serving/test_bento_store.py",  # the CLI in subprocesses (BentoML reads its home once)
    "tests/serving/test_replicas_pg.py",  # PostgreSQL and two real servers
    "tests/training/test_mlflow_server_pg.py",  # PostgreSQL + mlflow server + abeta serve; trains
    "tests/training/test_ray_train.py",  # a local Ray cluster; trains twice
    "tests/training/test_ray_tune.py",  # a local Ray cluster; Ray Tune trials, then trains
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(item.path).resolve().relative_to(ROOT).as_posix() in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def pytest_configure(config):
    """Refuse to test another checkout's code (an editable install of a sibling work tree)."""
    import adaptive_beta.models

    imported = Path(adaptive_beta.models.__file__).resolve().parents[1]
    if imported != ROOT:
        raise pytest.UsageError(
            f"adaptive_beta is imported from {imported}, not from this checkout ({ROOT}): "
            f"install this checkout into the interpreter that runs the tests (pip install -e .)"
        )


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    if not (REAL_DATA / "pietroc21_binance_perps").is_dir():
        pytest.skip(
            f"real market data not found at {REAL_DATA} (a user's clone has no ../shared); set ABETA_REAL_DATA"
        )
    return REAL_DATA


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch):
    """Every test gets its own MLflow store so tests never touch the user's mlruns/."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("ABETA_MLRUNS", str(tmp_path / "mlruns"))
