"""`abeta store load` / `abeta store info` on a dataset made by the real `abeta data simulate`."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from adaptive_beta.models.data.loaders import load_dataset
from adaptive_beta.models.market.store import open_market_store

ASSETS, BARS, FACTORS = 3, 360, 6  # 120 days of 8h bars; six simulated factors


def abeta(*args, cwd):
    cmd = [sys.executable, "-m", "adaptive_beta.cli.main", *args]
    env = {**os.environ, "ABETA_HOME": str(cwd)}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("store-sim")
    res = abeta(
        "data", "simulate", "--out", "sim", "--assets", str(ASSETS), "--days", "120", "--freq", "8h", cwd=root
    )
    assert res.returncode == 0, res.stderr
    return root / "sim"


def test_load_twice_appends_every_bar_once_and_info_lists_them(sim, tmp_path):
    db = tmp_path / "market.db"
    first = abeta("store", "load", "--data", str(sim), "--db", str(db), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    n_factor_points = sum(len(p.read_text().splitlines()) - 1 for p in (sim / "factors").glob("*.csv"))
    expected = ASSETS * BARS + BARS + n_factor_points  # assets, the composite, factor observations
    assert f"ok: {expected} bars appended, 0 already stored" in first.stdout
    assert "[10/10]" in first.stdout  # progress: 3 assets + CRYPTO_EW + 6 factors
    second = abeta("store", "load", "--data", str(sim), "--db", str(db), cwd=tmp_path)
    assert second.returncode == 0 and f"ok: 0 bars appended, {expected} already stored" in second.stdout
    panel = load_dataset(sim)
    with open_market_store(db) as store:
        us, cols = store.bars("SOLUSDT")
        assert len(us) == BARS and np.array_equal(cols["close"], panel.close["SOLUSDT"].to_numpy())
        assert np.array_equal(cols["funding_rate"], panel.funding_rate["SOLUSDT"].to_numpy())
        assert store.bars("CRYPTO_EW")[1]["close"].tolist() == panel.benchmarks["CRYPTO_EW"].tolist()
    info = abeta("store", "info", "--db", str(db), cwd=tmp_path)
    assert info.returncode == 0 and f"10 series, {expected} bars" in info.stdout
    assert "SOLUSDT      asset  8h bars" in info.stdout and "2021-04-30T16:00:00+00:00" in info.stdout


def test_a_changed_dataset_bar_exits_2_naming_series_and_time_and_keeps_the_store(sim, tmp_path):
    import shutil

    data = tmp_path / "sim"
    shutil.copytree(sim, data)
    db = tmp_path / "market.db"
    assert abeta("store", "load", "--data", str(data), "--db", str(db), cwd=tmp_path).returncode == 0
    f = data / "assets" / "SOLUSDT.csv"
    lines = f.read_text().splitlines()
    cells = lines[11].split(",")  # bar 10: 2021-01-04T08:00:00Z
    cells[4] = str(float(cells[4]) * 1.01)
    lines[11] = ",".join(cells)
    f.write_text("\n".join(lines) + "\n")
    res = abeta("store", "load", "--data", str(data), "--db", str(db), cwd=tmp_path)
    assert res.returncode == 2
    assert "SOLUSDT" in res.stderr and "2021-01-04T08:00:00+00:00" in res.stderr and "restate" in res.stderr
    with open_market_store(db) as store:
        assert store.bars("SOLUSDT")[1]["close"][10] == load_dataset(sim).close["SOLUSDT"].iloc[10]


def test_a_bad_file_exits_2_naming_file_row_and_column_and_stores_nothing(sim, tmp_path):
    import shutil

    data = tmp_path / "sim"
    shutil.copytree(sim, data)
    f = data / "assets" / "ETHUSDT.csv"
    lines = f.read_text().splitlines()
    cells = lines[5].split(",")
    cells[4] = "abc"
    lines[5] = ",".join(cells)
    f.write_text("\n".join(lines) + "\n")
    db = tmp_path / "market.db"
    res = abeta("store", "load", "--data", str(data), "--db", str(db), cwd=tmp_path)
    assert res.returncode == 2
    assert "ETHUSDT.csv" in res.stderr and "row" in res.stderr and "'close'" in res.stderr, res.stderr
    assert not db.exists()
    bad = abeta("store", "info", "--db", "mysql://x/y", cwd=tmp_path)
    assert bad.returncode == 2 and "mysql://x/y" in bad.stderr


def test_abeta_serve_refuses_a_market_db_url_it_cannot_open_before_starting(monkeypatch):
    from adaptive_beta.cli.serve import preflight
    from adaptive_beta.models.data.schema import DataError

    monkeypatch.setenv("ABETA_MARKET_DB", "mysql://db/market")
    with pytest.raises(DataError, match=r"ABETA_MARKET_DB: market-data store url 'mysql://db/market'"):
        preflight("127.0.0.1", 0)
