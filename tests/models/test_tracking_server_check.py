"""A tracking server that does not answer is said at once, not after MLflow's minutes of retries.

No server is started: the URL is a free port on 127.0.0.1 where nothing listens.  The real
server case is tests/training/test_mlflow_server_pg.py.
"""

from __future__ import annotations

import socket
import time

import pytest

from adaptive_beta.models.bundle.resolve import browse_hint, check_tracking_server, require_store
from adaptive_beta.models.data.schema import DataError


def _nothing_listens() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_an_unreachable_server_is_one_error_naming_the_url_within_seconds():
    url = _nothing_listens()
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=rf"cannot reach the MLflow tracking server {url} .*GET {url}/health"):
        check_tracking_server(url)
    assert time.perf_counter() - t0 < 5.0


def test_require_store_checks_the_server_of_the_setting(monkeypatch):
    url = _nothing_listens()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    with pytest.raises(DataError, match="cannot reach the MLflow tracking server"):
        require_store()


def test_local_stores_are_not_contacted(tmp_path):
    check_tracking_server(f"sqlite:///{tmp_path}/mlflow.db")  # no network, no error
    check_tracking_server("postgresql+psycopg://nobody@127.0.0.1:1/mlflow")  # a direct database URI


def test_the_compliance_history_of_an_unreachable_server_is_none_within_seconds():
    from adaptive_beta.serving.compliance.registry import champion_history

    t0 = time.perf_counter()
    assert champion_history("adaptive-beta", tracking_uri=_nothing_listens()) is None
    assert time.perf_counter() - t0 < 5.0  # MLflow's own retries took 4 min 58 s here


def test_the_browse_hint_is_the_server_itself_or_mlflow_ui_on_a_local_store():
    assert browse_hint("http://10.0.0.5:5000") == "open http://10.0.0.5:5000 in a browser"
    assert browse_hint("sqlite:///x/mlflow.db") == "mlflow ui --backend-store-uri sqlite:///x/mlflow.db"
