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
