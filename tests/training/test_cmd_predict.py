"""`abeta predict` (issue 12 item 5): a universe's forecasts offline, as of a bar, into parquet;
the numbers are `adaptive_beta.load_model(...).predict`'s, one row per (symbol, benchmark)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import adaptive_beta as ab
from adaptive_beta.cli.main import app

pytest.importorskip("torch")  # the bundle is trained here


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    from adaptive_beta.training.toy_bundle import build_real_bundle

    return build_real_bundle(tmp_path_factory.mktemp("predict"), n_assets=4, days=420, seed=2)


def run(*args):
    return CliRunner().invoke(app, ["predict", *map(str, args)], env={"COLUMNS": "200"})


def test_predict_writes_the_models_numbers_for_every_asset_and_benchmark(made, tmp_path):
    out = tmp_path / "betas.parquet"
    res = run("--model", made["bundle"], "--data", made["data"], "--out", out)
    assert res.exit_code == 0, res.output
    got = pd.read_parquet(out)
    m = ab.load_model(made["bundle"])
    ref = m.predict(ab.load_dataset(made["data"]))
    benches = list(m.meta.benchmarks)
    assert len(got) == len(ref) * len(benches)
    assert list(got.columns[:5]) == ["symbol", "benchmark", "beta", "lo", "hi"]
    for _, r in ref.iterrows():
        for b in benches:
            row = got[(got.symbol == r["symbol"]) & (got.benchmark == b)].iloc[0]
            assert row["beta"] == r[b] and row["lo"] == r[f"{b}_lo"] and row["hi"] == r[f"{b}_hi"]
    p = got[[c for c in got.columns if c.startswith("p_")]].to_numpy()
    assert p.shape[1] == len(m.meta.regimes) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert str(got["as_of"].dt.tz) == "UTC"


def test_as_of_an_earlier_bar_equals_predicting_on_the_data_cut_there(made, tmp_path):
    panel = ab.load_dataset(made["data"])
    at = panel.index[-40]
    out = tmp_path / "early.parquet"
    res = run("--model", made["bundle"], "--data", made["data"], "--out", out, "--as-of", at.isoformat())
    assert res.exit_code == 0, res.output
    got = pd.read_parquet(out)
    assert (got["as_of"] == at).all()
    ref = ab.load_model(made["bundle"]).predict(panel.slice(None, at))
    b = ab.load_model(made["bundle"]).meta.benchmarks[0]
    sol = ref.iloc[0]
    assert got[(got.symbol == sol["symbol"]) & (got.benchmark == b)]["beta"].iloc[0] == sol[b]


def test_assets_without_enough_history_are_skipped_and_said(made, tmp_path):
    panel = ab.load_dataset(made["data"])
    need = ab.load_model(made["bundle"]).meta.required_history.min_periods
    too_early = panel.index[need - 5].isoformat()
    res = run(
        "--model",
        made["bundle"],
        "--data",
        made["data"],
        "--out",
        tmp_path / "x.parquet",
        "--as-of",
        too_early,
    )
    assert res.exit_code == 2 and "no asset can be forecast" in res.output
    assert f"the model needs {need}" in res.output
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--as-of", "yesterday-ish"], "is not a time"),
        (["--as-of", "1999-01-01"], "before the data's first bar"),
        (["--symbols", "NOPEUSDT"], "NOPEUSDT not in the data"),
    ],
)
def test_bad_options_exit_2_naming_them(made, tmp_path, extra, says):
    res = run("--model", made["bundle"], "--data", made["data"], "--out", tmp_path / "y.parquet", *extra)
    assert res.exit_code == 2 and says in res.output
