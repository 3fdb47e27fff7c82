"""Scorecard on synthetic forecasts with known quality: ranking, DM, common sample, trivial pairs, schema."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from adaptive_beta.training.scorecard import (
    RECORD_KEYS,
    EvalConfig,
    Scorecard,
    forecasts_long,
    moments_long,
    score_forecasts,
)
from adaptive_beta.training.splits import WalkForwardConfig, make_folds

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
BENCHES = ["BTCUSDT", "CRYPTO_EW"]


def _synthetic(n=700, seed=0):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2021-01-01", periods=n, freq="1D", tz="UTC")
    long_idx = pd.MultiIndex.from_product([idx, SYMBOLS], names=["timestamp", "symbol"])
    # smooth, persistent "realised" betas per asset
    walk = np.cumsum(rng.normal(0, 0.03, size=(n, len(SYMBOLS))), axis=0) + 1.2
    real = {}
    for b in BENCHES:
        r = walk + (0.1 if b == "CRYPTO_EW" else 0.0)
        if b == "BTCUSDT":
            r[:, 0] = 1.0
        r[-30:] = np.nan  # the last H rows have no forward target
        real[b] = r.ravel()
    realised = pd.DataFrame(real, index=long_idx)
    truth = realised + rng.normal(0, 0.02, size=realised.shape)
    var_b = pd.DataFrame({b: rng.uniform(1e-4, 4e-4, size=len(long_idx)) for b in BENCHES}, index=long_idx)
    moments = {
        b: pd.DataFrame(
            {"var_b": var_b[b], "cov": realised[b] * var_b[b], "var_i": realised[b] ** 2 * var_b[b] + 2e-4},
            index=long_idx,
        )
        for b in BENCHES
    }

    def wide(noise, bias=0.0):
        return {
            b: pd.DataFrame(
                realised[b].to_numpy().reshape(n, -1) + bias + rng.normal(0, noise, size=(n, len(SYMBOLS))),
                index=idx,
                columns=SYMBOLS,
            )
            for b in BENCHES
        }

    forecasts = {
        "oracle_noisy": wide(0.05),
        "rolling_ols_30d": wide(0.20),
        "rolling_ols_90d": wide(0.30),
        "far_off": wide(0.30, bias=0.8),
    }
    forecasts["rolling_ols_90d"]["BTCUSDT"].iloc[:400, 1] = np.nan  # warming up: not scored for anyone
    folds = make_folds(idx, WalkForwardConfig(train_min="200d", val="60d", test="120d"))
    return forecasts, realised, moments, truth, folds


@pytest.fixture(scope="module")
def card():
    forecasts, realised, moments, truth, folds = _synthetic()
    kinds = {n: "baseline" for n in forecasts} | {"oracle_noisy": "model"}
    return score_forecasts(
        forecasts,
        kinds,
        realised,
        moments,
        folds,
        truth,
        horizon_bars=30,
        block_bars=60,
        n_boot=300,
        progress=False,
    )


def test_good_forecaster_beats_the_far_off_one_and_dm_rejects(card):
    for b in BENCHES:
        assert card.value("oracle_noisy", b, "rmse") == pytest.approx(0.05, rel=0.1)
        assert card.value("far_off", b, "rmse") == pytest.approx(np.sqrt(0.8**2 + 0.3**2), rel=0.05)
        assert card.best(b, "rmse") == "oracle_noisy"
        assert card.best(b, "rmse", kind="baseline") == "rolling_ols_30d"
        assert card.meta["reference"][b] == "rolling_ols_30d"
        assert card.value("oracle_noisy", b, "dm_pvalue") < 1e-3
        assert card.value("far_off", b, "dm_pvalue") < 1e-3
        # mse ratio vs rolling_ols_30d: (0.05 / 0.2)^2 = 0.0625
        ratio = card.value("oracle_noisy", b, "mse_ratio")
        assert ratio == pytest.approx(0.0625, rel=0.2)
        assert (
            card.value("oracle_noisy", b, "mse_ratio_lo")
            < ratio
            < card.value("oracle_noisy", b, "mse_ratio_hi")
        )
        assert card.value("rolling_ols_30d", b, "mse_ratio") == 1.0
        assert card.value("rolling_ols_30d", b, "dm_pvalue") is None  # no test against itself
        assert card.value("oracle_noisy", b, "rmse_true") == pytest.approx(
            np.sqrt(0.05**2 + 0.02**2), rel=0.1
        )
        assert card.value("oracle_noisy", b, "r2") > 0.5 > card.value("far_off", b, "r2")


def test_hedge_metrics_follow_the_closed_forms(card):
    # hedge_error = var_i - 2 b cov + b^2 var_b = 2e-4 + (b - beta)^2 var_b; var_b ~ U(1e-4, 4e-4)
    for name, mse in [("oracle_noisy", 0.05**2), ("far_off", 0.8**2 + 0.3**2)]:
        ex = card.value(name, "CRYPTO_EW", "excess_hedge_var")
        assert ex == pytest.approx(mse * 2.5e-4, rel=0.15)
        assert card.value(name, "CRYPTO_EW", "hedge_error") == pytest.approx(2e-4 + ex, rel=1e-9)


def test_common_sample_and_trivial_pair_exclusion(card):
    forecasts, realised, _, _, folds = _synthetic()
    days = realised.index.get_level_values("timestamp").unique()
    in_test = np.zeros(len(days), bool)
    for f in folds:
        in_test |= (days >= f.test_start) & (days <= f.test_end)
    finite_days = int((in_test & (days < days[-30])).sum())  # the last 30 rows have no target
    assert finite_days == 700 - 320 - 30  # first test row 200 + 30 + 60 + 30
    # CRYPTO_EW: all 4 assets on test days with a finite target
    n_ew = card.value("far_off", "CRYPTO_EW", "n")
    assert n_ew == 4 * finite_days
    # BTCUSDT: BTC itself skipped (3 assets), ETH lost where rolling_ols_90d was warming up (< row 400)
    first_test = realised.index.get_level_values(0).unique().get_loc(folds[0].test_start)
    lost_eth = max(0, 400 - first_test)
    assert card.value("far_off", "BTCUSDT", "n") == 3 * finite_days - lost_eth
    # every estimator is scored on the same rows
    ns = {
        r["value"]
        for r in card.records
        if r["metric"] == "n" and r["benchmark"] == "BTCUSDT" and r["split"] == "pooled"
    }
    assert len(ns) == 1
    # per-fold n add up to pooled
    per_fold = sum(card.value("far_off", "BTCUSDT", "n", f.name) or 0 for f in folds)
    assert per_fold == card.value("far_off", "BTCUSDT", "n")


def test_records_follow_the_contract_schema_and_round_trip_json(card, tmp_path):
    assert card.records
    for r in card.records:
        assert tuple(r) == RECORD_KEYS
        assert r["kind"] in ("baseline", "model")
        assert r["split"] == "pooled" or r["split"].startswith("fold")
        assert isinstance(r["value"], int | float) and np.isfinite(r["value"])
    metrics = {r["metric"] for r in card.records}
    assert {
        "rmse",
        "mae",
        "r2",
        "hedge_error",
        "excess_hedge_var",
        "dm_pvalue",
        "rmse_true",
        "mse_ratio",
        "n",
    } <= metrics
    splits = {r["split"] for r in card.records}
    assert splits == {"pooled", "fold0", "fold1", "fold2"}
    path = card.to_json(tmp_path / "out" / "scores.json")
    assert json.loads(path.read_text()) == card.records
    assert Scorecard.from_json(path).records == card.records
    assert not list(path.parent.glob("*.tmp"))


def test_table_lists_estimators_sorted_by_rmse_per_benchmark(card):
    text = card.table()
    block = text.split("== CRYPTO_EW")[1].split("\n", 1)[1]
    order = [
        name for name in ("oracle_noisy", "rolling_ols_30d", "rolling_ols_90d", "far_off") if name in block
    ]
    assert sorted(order, key=block.index) == ["oracle_noisy", "rolling_ols_30d", "rolling_ols_90d", "far_off"]
    assert "reference for mse_ratio/dm_p: rolling_ols_30d" in text


def test_long_forecasts_on_test_rows_only_are_accepted():
    forecasts, realised, moments, truth, folds = _synthetic()
    wide = forecasts.pop("oracle_noisy")
    long = pd.concat({b: forecasts_long(wide, b) for b in BENCHES}, axis=1)
    long = long[long.index.get_level_values("timestamp") >= folds[0].test_start]
    forecasts["model"] = long
    card = score_forecasts(
        forecasts,
        {"model": "model"},
        realised,
        moments,
        folds,
        None,
        horizon_bars=30,
        n_boot=50,
        progress=False,
    )
    assert card.best("CRYPTO_EW", "rmse") == "model"
    assert card.value("model", "CRYPTO_EW", "rmse_true") is None


def test_low_coverage_estimator_is_left_out_not_shrinking_the_sample():
    forecasts, realised, moments, truth, folds = _synthetic()
    full = score_forecasts(
        forecasts, {}, realised, moments, folds, horizon_bars=30, n_boot=50, progress=False
    )
    sparse = {b: f[f.index < folds[0].test_end] for b, f in forecasts["far_off"].items()}
    forecasts["sparse"] = sparse
    card = score_forecasts(
        forecasts, {}, realised, moments, folds, horizon_bars=30, n_boot=50, progress=False
    )
    assert card.meta["left_out"]["CRYPTO_EW"] == ["sparse"]
    assert card.value("far_off", "CRYPTO_EW", "n") == full.value("far_off", "CRYPTO_EW", "n")


def test_moments_in_multiindex_rows_are_understood():
    _, realised, moments, _, _ = _synthetic(n=400)
    stacked = pd.concat(moments, names=["benchmark"]).reorder_levels(["timestamp", "symbol", "benchmark"])
    got = moments_long(stacked, "CRYPTO_EW")
    pd.testing.assert_frame_equal(got.sort_index(), moments["CRYPTO_EW"].sort_index(), check_names=False)


def test_eval_config_forces_its_horizon_onto_the_splits_and_names_bad_fields():
    cfg = EvalConfig(horizon="7d")
    assert cfg.splits.horizon == "7d" and cfg.splits.embargo_td == pd.Timedelta("7D")
    with pytest.raises(ValueError, match="embargo"):
        EvalConfig(horizon="60d", splits={"embargo": "30d"})
    with pytest.raises(ValueError, match="n_boot"):
        EvalConfig(n_boot=2)


def test_eval_config_checks_baseline_settings_by_name():
    cfg = EvalConfig(baselines={"rolling_windows": ["30d", "90d"], "kalman_mf": False})
    assert cfg.baseline_config().rolling_windows == ("30d", "90d")
    with pytest.raises(ValueError, match="rolling_window"):
        EvalConfig(baselines={"rolling_window": ["30d"]})
    with pytest.raises(ValueError, match="invalid duration"):
        EvalConfig(baselines={"rolling_windows": ["thirty"]})


def test_flat_forward_moment_columns_of_models_targets_are_understood():
    _, realised, moments, _, _ = _synthetic(n=400)
    flat = pd.concat(
        {
            f"{stat}_{b}": moments[b][key]
            for b in BENCHES
            for stat, key in (("var_bench", "var_b"), ("cov", "cov"), ("var_asset", "var_i"))
        },
        axis=1,
    )
    flat["n_BTCUSDT"] = 30
    got = moments_long(flat, "BTCUSDT")
    assert list(got.columns) == ["var_b", "cov", "var_i"]
    np.testing.assert_array_equal(got.to_numpy(), moments["BTCUSDT"][["var_b", "cov", "var_i"]].to_numpy())
    assert moments_long(flat, "ETHUSDT") is None


@pytest.mark.realdata
def test_real_8h_perps_scorecard_has_fair_common_samples_and_smoothed_betas_beat_30d_ols(real_data_dir):
    from pathlib import Path

    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.training.scorecard import evaluate_baselines

    manifest = Path(__file__).resolve().parents[2] / "docs" / "datasets" / "binance-perps-8h.toml"
    if not manifest.is_file():
        pytest.skip(f"no manifest at {manifest}")
    panel = load_dataset(manifest)
    cfg = EvalConfig(
        n_boot=200,
        splits={"max_folds": 4},
        baselines={
            "rolling_windows": ["30d", "180d"],
            "ewma_halflives": ["90d"],
            "welch_halflives": ["60d"],
            "kalman": False,
            "kalman_mf": False,
            "multifactor_window": None,
        },
    )
    card = evaluate_baselines(panel, cfg, progress=False)
    assert [f["k"] for f in card.meta["folds"]] == [0, 1, 2, 3]
    for bench in ("BTCUSDT", "CRYPTO_EW"):
        ns = {
            r["value"]
            for r in card.records
            if r["benchmark"] == bench and r["metric"] == "n" and r["split"] == "pooled"
        }
        assert len(ns) == 1 and ns.pop() > 10_000  # one common sample for every estimator
        assert card.meta["reference"][bench] in ("rolling_ols_30d", "rolling_ols_180d")
        # on the 8h perps tested 2024-05 .. 2026-02, 30-day OLS is the noisiest forecaster of the 30-day forward beta
        assert card.value("rolling_ols_30d", bench, "rmse") > card.value("welch_hl60d", bench, "rmse")
        assert card.value("welch_hl60d", bench, "r2") > 0


def test_interval_coverage_and_width_use_the_scorecards_common_sample(card):
    """Rows the MSE leaves out (a baseline still warming up) must not count for coverage either."""
    from adaptive_beta.training.pipeline import _coverage_records

    _, realised, _, _, folds = _synthetic()
    test = np.zeros(len(realised), bool)
    for f in folds:
        test |= f.mask(realised.index, "test")
    preds = pd.DataFrame(index=realised.index[test])
    rows = card.samples["BTCUSDT"]
    assert len(rows) == card.value("far_off", "BTCUSDT", "n")
    for b in BENCHES:
        y = realised[b].reindex(preds.index).to_numpy()
        inside = preds.index.isin(card.samples[b])
        # the interval holds the target (width 0.2) on the common sample, misses it (width 2) elsewhere
        preds[f"{b}_lo"] = np.where(inside, y - 0.1, y + 1.0)
        preds[f"{b}_hi"] = np.where(inside, y + 0.1, y + 3.0)
    recs = _coverage_records(preds, realised, BENCHES, "pooled", "m", card.samples)
    got = {(r["benchmark"], r["metric"]): r["value"] for r in recs}
    assert got[("BTCUSDT", "coverage90")] == 1.0
    assert got[("BTCUSDT", "interval_width")] == pytest.approx(0.2)
    everything = _coverage_records(preds, realised, BENCHES, "pooled", "m")
    cov_all = [r["value"] for r in everything if r["metric"] == "coverage90" and r["benchmark"] == "BTCUSDT"]
    assert cov_all[0] < 1.0  # the old rule counted the warm-up rows
