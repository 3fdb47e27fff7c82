"""Features per block of assets equal the one-shot table bit for bit, in memory and streamed to
parquet; they stay causal; bad block arguments are refused by name.  (Pool runs with workers 2:
tests/models/test_feature_pool.py, a slow module.)"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from adaptive_beta.models.features.blocks import (
    META_FILE,
    asset_blocks,
    read_feature_dataset,
    write_feature_dataset,
)
from adaptive_beta.models.features.compute import compute_features
from adaptive_beta.models.features.spec import FeatureSpec

# every optional column on (funding/OI z-scores, high-vol betas, vol ratios, a factor level), so
# every code path of compute_feature_arrays is blocked
SPEC = FeatureSpec(
    beta_windows=("7d", "30d"),
    long_beta_windows=("60d",),
    ewma_halflives=("14d",),
    welch_halflife="30d",
    welch_extra_halflives=("60d",),
    factor_beta_windows=("30d",),
    factor_windows=("7d",),
    downside_window="30d",
    drawdown_window="30d",
    vol_ratio=True,
    funding_z_window="7d",
    oi_z_window="7d",
    high_vol_beta_window="30d",
    factor_levels=("VIX",),
)


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    """7 simulated perps of 8h bars; two listed late and one with a gap, so assets have
    different row sets and the blocks' rows interleave in the long table."""
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation

    root = tmp_path_factory.mktemp("blocks")
    p = load_dataset(
        write_simulation(simulate(SimConfig(n_assets=7, days=150, seed=5, freq="8h")), root / "s")
    )
    syms = p.symbols
    p.close.iloc[:100, p.close.columns.get_loc(syms[2])] = np.nan  # listed late
    p.close.iloc[:37, p.close.columns.get_loc(syms[5])] = np.nan
    p.close.iloc[200:230, p.close.columns.get_loc(syms[4])] = np.nan  # a gap
    return p


@pytest.fixture(scope="module")
def reference(panel):
    return compute_features(panel, SPEC)


def assert_same_table(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(got.columns) == list(ref.columns)
    assert got.shape == ref.shape
    assert (got.index.get_level_values("timestamp") == ref.index.get_level_values("timestamp")).all()
    assert (got.index.get_level_values("symbol") == ref.index.get_level_values("symbol")).all()
    a, b = got.to_numpy(dtype=np.float64), ref.to_numpy(dtype=np.float64)
    assert a.tobytes() == b.tobytes()  # bit for bit, NaN payloads included


def test_the_panel_exercises_interleaved_rows(panel, reference):
    n_rows = int(np.isfinite(panel.close.to_numpy()).sum())
    assert len(reference.frame) == n_rows < panel.close.size
    assert reference.frame.shape[1] > 60
    assert np.isfinite(reference.frame["fac_VIX_log_level"]).sum() > 100


@pytest.mark.parametrize("block_assets", [1, 2, 3, 7, 50])
def test_blocks_in_memory_equal_the_one_shot_table(panel, reference, block_assets):
    table = compute_features(panel, SPEC, block_assets=block_assets)
    assert_same_table(table.frame, reference.frame)
    assert table.groups == reference.groups
    assert table.base_columns == reference.base_columns
    assert table.spec_hash == reference.spec_hash and table.freq == reference.freq


def test_the_default_spec_is_blocked_exactly_too(panel):
    assert_same_table(compute_features(panel, block_assets=4).frame, compute_features(panel).frame)


@pytest.mark.parametrize("block_assets", [1, 3, 50])
def test_streamed_parquet_blocks_read_back_as_the_one_shot_table(panel, reference, tmp_path, block_assets):
    out = write_feature_dataset(panel, tmp_path / "feat", SPEC, block_assets=block_assets)
    files = sorted(p.name for p in out.glob("block-*.parquet"))
    assert len(files) == -(-7 // block_assets)
    meta = json.loads((out / META_FILE).read_text())
    assert meta["rows"] == len(reference.frame)
    assert [s for f in meta["files"] for s in f["symbols"]] == sorted(panel.symbols)
    assert meta["groups"] == reference.groups and meta["spec_hash"] == SPEC.hash()
    assert_same_table(read_feature_dataset(out), reference.frame)
    one = pd.read_parquet(out / files[0])  # one block alone: its assets' rows, time-sorted
    assert set(one["symbol"]) == set(meta["files"][0]["symbols"])
    assert one["timestamp"].is_monotonic_increasing
    assert len(pd.read_parquet(out)) == len(reference.frame)  # a plain parquet dataset: meta ignored


def test_an_existing_output_folder_is_refused_and_kept(panel, tmp_path):
    out = tmp_path / "feat"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="already exists"):
        write_feature_dataset(panel, out, SPEC, block_assets=3)
    assert (out / "mine.txt").read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["feat"]  # no temporary folder left behind


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"block_assets": 0}, "block_assets must be >= 1, got 0"),
        ({"block_assets": -2}, "block_assets must be >= 1, got -2"),
        ({"block_assets": 2.5}, "block_assets must be a whole number"),
        ({"workers": 0}, "workers must be a whole number >= 1, got 0"),
        ({"block_assets": 2, "workers": -1}, "workers must be a whole number >= 1, got -1"),
    ],
)
def test_bad_block_arguments_are_named(panel, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=f"compute_features: {match}"):
        compute_features(panel, SPEC, **kwargs)
    with pytest.raises(ValueError, match=f"write_feature_dataset: {match}"):
        write_feature_dataset(panel, tmp_path / "x", SPEC, **kwargs)
    assert not (tmp_path / "x").exists()


def test_blocks_are_consecutive_runs_sized_by_memory_by_default():
    syms = [f"S{i:03d}" for i in range(10)]
    assert asset_blocks(syms, 4, 100) == [syms[:4], syms[4:8], syms[8:]]
    assert asset_blocks(syms, 1, 100) == [[s] for s in syms]
    assert asset_blocks(syms, None, 3 * 365) == [syms]  # 3 years of daily bars: one block
    hourly = asset_blocks(syms, None, 17_520)  # 2 years hourly: ~9 assets of ~400 MB
    assert [len(b) for b in hourly] == [9, 1]


def test_blocked_features_are_causal(panel):
    """Perturbing every bar after a cut moves no feature at or before it, blocked as one-shot."""
    cut = panel.index[250]
    later = panel.index > cut
    noisy = panel.select(panel.symbols)
    noisy.close = panel.close.copy()
    noisy.volume = panel.volume.copy()
    rng = np.random.default_rng(0)
    noisy.close.loc[later] *= np.exp(rng.normal(0, 0.2, size=noisy.close.loc[later].shape))
    noisy.volume.loc[later] *= 3.0
    a = compute_features(panel, SPEC, block_assets=2).frame
    b = compute_features(noisy, SPEC, block_assets=2).frame
    upto = a.index.get_level_values("timestamp") <= cut
    assert a[upto].to_numpy().tobytes() == b[upto].to_numpy().tobytes()
    after = ~np.isclose(a[~upto].to_numpy(), b[~upto].to_numpy(), equal_nan=True)
    assert after.mean() > 0.3  # the perturbation did reach the later rows
