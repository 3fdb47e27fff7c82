"""Simulator calibration: the statistics, the calibrated market vs the real targets, the legacy preset.

(a) always on: the default (calibrated) simulator, on held-out seeds, lies within the recorded
    tolerances of the recorded real targets (models/sim/config.py), and the legacy preset does not;
(b) with the real data (../shared): the real statistics recomputed equal the recorded targets;
(c) the legacy preset reproduces the simulator of commit 210f6b0 bit for bit (hashes recorded
    from that code before any change on this branch).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter

from adaptive_beta.models.sim.config import (
    CALIBRATION_SHAPE,
    CALIBRATION_TARGETS,
    CALIBRATION_TOLERANCES,
    CHECK_SEEDS,
    PRESETS,
    SimConfig,
    matching_preset,
)
from adaptive_beta.models.sim.simulator import simulate
from adaptive_beta.models.sim.stats import (
    STAT_NAMES,
    lagged_autocorrelation,
    market_statistics,
    rolling_betas,
    simulated_statistics,
    simulation_panel,
)

MANIFEST = Path(__file__).resolve().parents[2] / "docs" / "datasets" / "binance-perps-8h.toml"

# mean over CHECK_SEEDS (201..208) of market_statistics on markets of CALIBRATION_SHAPE
SIMULATED = {
    "calibrated": {
        "acf30_btc": 0.0832, "acf90_btc": -0.0768, "acf180_btc": 0.03,
        "acf30_ew": 0.1567, "acf90_ew": -0.0505, "acf180_ew": -0.0784,
        "disp_btc": 0.2751, "disp_ew": 0.3305, "wsd_btc": 0.3195, "wsd_ew": 0.2507,
        "level_btc": 0.9174, "common_sd_btc": 0.2476,
        "volvol_btc": 0.4249, "volvol_ew": 0.4666, "volvol_assets": 0.4809,
        "vol_btc": 0.8126, "vol_ew": 0.8428,
        "share_calm": 0.659, "share_volatile": 0.2417, "share_crash": 0.0993,
        "dur_calm": 18.8566, "dur_volatile": 4.6786, "dur_crash": 3.9848,
    },
    "legacy": {
        "acf30_btc": 0.2234, "acf90_btc": -0.1306, "acf180_btc": -0.1709,
        "acf30_ew": 0.1759, "acf90_ew": -0.0721, "acf180_ew": -0.0671,
        "disp_btc": 0.1967, "disp_ew": 0.1847, "wsd_btc": 0.1855, "wsd_ew": 0.0835,
        "level_btc": 1.21, "common_sd_btc": 0.1513,
        "volvol_btc": 0.315, "volvol_ew": 0.3575, "volvol_assets": 0.3237,
        "vol_btc": 0.7819, "vol_ew": 1.0412,
        "share_calm": 0.4936, "share_volatile": 0.3137, "share_crash": 0.1927,
        "dur_calm": 14.1776, "dur_volatile": 5.2414, "dur_crash": 4.752,
    },
}  # fmt: skip
# what the legacy market gets wrong: its betas barely move and alts move together with BTC too much
LEGACY_OUTSIDE = {"disp_ew", "wsd_btc", "wsd_ew", "common_sd_btc", "share_crash"}


@pytest.fixture(scope="module")
def simulated() -> dict[str, pd.DataFrame]:
    return {preset: simulated_statistics(preset, CHECK_SEEDS) for preset in PRESETS}


def _outside(means: pd.Series) -> set[str]:
    return {k for k in STAT_NAMES if abs(means[k] - CALIBRATION_TARGETS[k]) > CALIBRATION_TOLERANCES[k]}


# --- the statistics (pure functions) --------------------------------------------------------------


def test_rolling_betas_equal_the_ols_slope_of_each_complete_window():
    rng = np.random.default_rng(0)
    x = pd.Series(rng.normal(size=60))
    y = pd.DataFrame({"a": 0.7 * x + rng.normal(size=60), "b": -1.3 * x + rng.normal(size=60)})
    y.loc[10, "b"] = np.nan
    got = rolling_betas(y, x, 20)
    for t in (19, 35, 59):
        w = slice(t - 19, t + 1)
        assert got.loc[t, "a"] == pytest.approx(np.polyfit(x.iloc[w], y["a"].iloc[w], 1)[0], rel=1e-9)
    assert got["a"].iloc[:19].isna().all()
    assert got["b"].iloc[10:30].isna().all() and np.isfinite(got.loc[30, "b"])  # windows holding the gap


def test_lagged_autocorrelation_of_an_ar1_is_phi_to_the_lag():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(lfilter([1.0], [1.0, -0.9], rng.normal(size=(200_000, 2)), axis=0))
    assert lagged_autocorrelation(frame, 5, min_pairs=10) == pytest.approx(0.9**5, abs=0.01)
    assert np.isnan(lagged_autocorrelation(frame.iloc[:8], 5, min_pairs=10))  # too few pairs


def test_market_statistics_is_pure_and_ignores_bars_from_until_on():
    res = simulate(SimConfig(seed=3, n_assets=5, days=400, freq="8h"))
    panel = simulation_panel(res)
    before = panel.fingerprint()
    cut = "2021-11-01"
    stats = market_statistics(panel, until=cut)
    assert panel.fingerprint() == before
    assert list(stats) == list(STAT_NAMES) and all(np.isfinite(v) for v in stats.values())
    later = panel.close.index >= pd.Timestamp(cut, tz="UTC")
    panel.close.loc[later] = panel.close.loc[later] * 3.0  # scramble what comes after the cut
    panel.benchmarks.loc[later] = 1.0
    assert market_statistics(panel, until=cut) == stats


# --- (a) the calibrated default vs the recorded real targets -----------------------------------------


@pytest.mark.parametrize("preset", PRESETS)
def test_simulated_statistics_are_the_recorded_numbers(simulated, preset):
    means = simulated[preset].mean()
    for name in STAT_NAMES:
        assert means[name] == pytest.approx(SIMULATED[preset][name], abs=1e-4), name


def test_calibrated_default_matches_every_real_target_within_tolerance_and_legacy_does_not(simulated):
    assert SimConfig() == SimConfig.from_preset("calibrated") and matching_preset(SimConfig()) == "calibrated"
    assert set(CALIBRATION_TARGETS) == set(CALIBRATION_TOLERANCES) == set(STAT_NAMES)
    calibrated = simulated["calibrated"].mean()
    assert _outside(calibrated) == set()
    # the real number is one draw of a sample this size: jointly, z = gap / (tolerance / 2), i.e. in
    # sampling sds of one such sample, stays well inside the chi2(23) 95 % quantile (35.2)
    z = (calibrated - pd.Series(CALIBRATION_TARGETS)) / (pd.Series(CALIBRATION_TOLERANCES) / 2)
    assert float((z**2).sum()) == pytest.approx(9.97, abs=0.05)
    legacy = simulated["legacy"].mean()
    assert _outside(legacy) == LEGACY_OUTSIDE
    z_legacy = (legacy - pd.Series(CALIBRATION_TARGETS)) / (pd.Series(CALIBRATION_TOLERANCES) / 2)
    assert float((z_legacy**2).sum()) == pytest.approx(77.7, abs=0.1)
    # what moved: betas move about twice as much, alt betas to BTC swing together more, fewer crashes
    assert calibrated["wsd_btc"] > 1.6 * legacy["wsd_btc"] and calibrated["wsd_ew"] > 2.5 * legacy["wsd_ew"]
    assert calibrated["common_sd_btc"] > 1.5 * legacy["common_sd_btc"]
    assert calibrated["share_crash"] < 0.6 * legacy["share_crash"]


# --- (b) with the real data: the targets are what the real data say ---------------------------------


@pytest.mark.realdata
def test_real_statistics_before_2021_05_equal_the_recorded_targets(real_data_dir, simulated):
    from adaptive_beta.models.data.loaders import load_dataset

    panel = load_dataset(MANIFEST)
    real = market_statistics(panel, until="2021-05-01")
    for name in STAT_NAMES:
        assert real[name] == pytest.approx(CALIBRATION_TARGETS[name], abs=1e-4), name
    sim = simulated["calibrated"].mean()
    assert [k for k in STAT_NAMES if abs(sim[k] - real[k]) > CALIBRATION_TOLERANCES[k]] == []
    # the sample the targets describe: 11 perps, 8h bars, 2020-01-01 .. 2021-04-30
    sample = panel.slice(None, pd.Timestamp("2021-05-01", tz="UTC") - pd.Timedelta("1ns"))
    assert len(sample.symbols) == CALIBRATION_SHAPE["n_assets"] and sample.freq == pd.Timedelta("8h")
    assert (sample.index[-1] - sample.index[0]).days + 1 == CALIBRATION_SHAPE["days"]
    assert sample.index[0] == pd.Timestamp(CALIBRATION_SHAPE["start"], tz="UTC")


# --- (c) the legacy preset is the old simulator, bit for bit -------------------------------------------


def _digest(res) -> str:
    h = hashlib.sha256()
    for sym in res.config.symbols:
        h.update(np.ascontiguousarray(res.assets[sym].to_numpy(dtype=np.float64)).tobytes())
    for name in sorted(res.factors):
        h.update(np.ascontiguousarray(res.factors[name]["close"].to_numpy(dtype=np.float64)).tobytes())
    h.update(np.ascontiguousarray(res.truth_betas.to_numpy(dtype=np.float64)).tobytes())
    cols = ["regime", "var_BTCUSDT", "var_CRYPTO_EW"]
    h.update(np.ascontiguousarray(res.truth_market[cols].to_numpy(dtype=np.float64)).tobytes())
    return h.hexdigest()


# recorded with the code of commit 210f6b0 (SimConfig(**kwargs)), before this branch changed anything
LEGACY_DIGESTS = [
    ({}, "7596b7b041de47a25bcc21d0983fd03ae6fc183c81280ccb1c3f74b1ff9b64b2"),
    (
        {"seed": 3, "n_assets": 5, "days": 200, "freq": "8h"},
        "55cb2a5369281156d778a02e8e134aa470d7cccc4812ae0467412a79ffad0876",
    ),
]
# sha256 of `cat assets/*.csv factors/*.csv` written by `abeta data simulate --out DIR` at 210f6b0
LEGACY_CLI_CSV_SHA256 = "a5f7a53cc818734d6a0194a392bb41f3bb2d3294be477286c15e927604a512a5"


@pytest.mark.parametrize("kwargs,digest", LEGACY_DIGESTS)
def test_legacy_preset_reproduces_the_old_simulator_bit_for_bit(kwargs, digest):
    cfg = SimConfig.from_preset("legacy", **kwargs)
    assert matching_preset(cfg) == "legacy"
    assert _digest(simulate(cfg)) == digest
    assert _digest(simulate(SimConfig(**kwargs))) != digest  # the default moved


def test_cli_preset_legacy_writes_the_old_files(tmp_path):
    from typer.testing import CliRunner

    from adaptive_beta.cli.main import app

    out = tmp_path / "legacy"
    result = CliRunner().invoke(app, ["data", "simulate", "--out", str(out), "--preset", "legacy"])
    assert result.exit_code == 0, result.output
    assert "preset legacy" in result.output
    files = sorted((out / "assets").glob("*.csv")) + sorted((out / "factors").glob("*.csv"))
    assert hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest() == LEGACY_CLI_CSV_SHA256
    assert "# preset: legacy" in (out / "simulation.toml").read_text()
    assert "--preset legacy" in (out / "README.md").read_text()
    bad = CliRunner().invoke(app, ["data", "simulate", "--out", str(tmp_path / "x"), "--preset", "old"])
    assert bad.exit_code == 2 and "unknown preset 'old'" in bad.output


def test_unknown_preset_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="unknown simulator preset 'old'; use one of calibrated, legacy"):
        SimConfig.from_preset("old")
    with pytest.raises(ValueError, match="alt_mkt_range"):
        SimConfig(alt_mkt_range=(1.5, 1.0))
    with pytest.raises(ValueError, match="idio_logvol_sd"):
        SimConfig(idio_logvol_sd=-0.1)
