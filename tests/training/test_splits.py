"""Walk-forward folds: the embargo keeps training targets out of validation/test, blocks walk forward."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from adaptive_beta.models.durations import to_periods
from adaptive_beta.training.splits import Fold, WalkForwardConfig, fold_masks, make_folds, pooled_test_mask


def _index(n: int, freq: str = "1D") -> pd.DatetimeIndex:
    return pd.date_range("2020-01-01", periods=n, freq=freq, tz="UTC")


def test_default_config_on_1500_daily_bars_gives_six_folds_with_30_day_embargo():
    idx = _index(1500)
    folds = make_folds(idx, WalkForwardConfig())
    assert len(folds) == 6
    f0 = folds[0]
    assert f0.train_start == idx[0]
    assert f0.train_end == idx[364]  # 365 bars of training
    assert f0.val_start == idx[364 + 31]  # 30 embargo bars in between
    assert f0.val_end == idx[364 + 31 + 89]
    assert f0.test_start == idx[364 + 31 + 89 + 31]
    assert f0.test_end == idx[364 + 31 + 89 + 31 + 179]
    assert folds[1].test_start == idx[364 + 31 + 89 + 31 + 180]
    # the last block is cut at the end of the data
    assert folds[-1].test_end == idx[-1]


def test_embargo_shorter_than_horizon_is_a_config_error_naming_the_field():
    with pytest.raises(ValidationError, match="embargo"):
        WalkForwardConfig(horizon="30d", embargo="10d")


def test_bad_duration_names_the_field():
    with pytest.raises(ValidationError) as info:
        WalkForwardConfig(horizon="thirty days")
    assert info.value.errors()[0]["loc"] == ("horizon",)


def test_data_too_short_says_how_many_bars_were_needed():
    with pytest.raises(ValueError, match=r"too short.*needs 546"):
        make_folds(_index(400), WalkForwardConfig())


def test_max_folds_keeps_the_most_recent_and_renumbers():
    idx = _index(1500)
    all_folds = make_folds(idx, WalkForwardConfig())
    last2 = make_folds(idx, WalkForwardConfig(max_folds=2))
    assert [f.k for f in last2] == [0, 1]
    assert last2[0].test_start == all_folds[-2].test_start
    assert last2[1].test_end == all_folds[-1].test_end


def test_masks_work_on_wide_and_long_indexes_and_partition_periods():
    idx = _index(900)
    fold = make_folds(idx, WalkForwardConfig(train_min="200d", val="50d", test="100d"))[0]
    m = fold_masks(idx, fold)
    assert m["train"].sum() == 200 and m["val"].sum() == 50 and m["test"].sum() == 100
    assert not (m["train"] & m["test"]).any()
    long = pd.MultiIndex.from_product([idx, ["A", "B"]], names=["timestamp", "symbol"])
    assert fold.mask(long, "test").sum() == 200
    assert pooled_test_mask(idx, [fold]).sum() == 100


def test_no_validation_block_puts_one_embargo_between_train_and_test():
    idx = _index(700)
    f = make_folds(idx, WalkForwardConfig(val="0d", train_min="300d", test="100d"))[0]
    assert f.val_start is None and f.mask(idx, "val").sum() == 0
    assert idx.get_loc(f.test_start) - idx.get_loc(f.train_end) == 31


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(200, 1200),
    freq=st.sampled_from(["1D", "8h"]),
    horizon=st.integers(1, 20),
    extra_embargo=st.integers(0, 10),
    train_min=st.integers(20, 150),
    train_max_extra=st.integers(0, 100),
    val=st.integers(0, 40),
    test=st.integers(5, 60),
    step_extra=st.integers(0, 10),
    rolling=st.booleans(),
)
def test_embargo_property_holds_for_every_fold(
    n, freq, horizon, extra_embargo, train_min, train_max_extra, val, test, step_extra, rolling
):
    unit = "d" if freq == "1D" else "h"
    mult = 1 if freq == "1D" else 8
    d = lambda bars: f"{bars * mult}{unit}"  # noqa: E731
    cfg = WalkForwardConfig(
        horizon=d(horizon),
        embargo=d(horizon + extra_embargo),
        train_min=d(train_min),
        train_max=d(train_min + train_max_extra),
        val=d(val) if val else "0d",
        test=d(test),
        step=d(test + step_extra),
        mode="rolling" if rolling else "expanding",
    )
    idx = _index(n, freq)
    bar = pd.Timedelta(freq)
    h = to_periods(cfg.horizon, bar)
    try:
        folds = make_folds(idx, cfg)
    except ValueError as exc:
        assert "too short" in str(exc)
        assert n < train_min + 2 * (horizon + extra_embargo) + val + horizon + 1
        return
    assert folds
    prev: Fold | None = None
    for f in folds:
        assert f.train_end + h * bar < (f.val_start or f.test_start)
        if f.val_start is not None:
            assert f.val_end + h * bar < f.test_start
        assert f.test_start <= f.test_end
        # at least one test row has its forward target inside the data
        assert f.test_start + h * bar <= idx[-1]
        if prev is not None:
            assert prev.test_end < f.test_start
            assert f.test_start - prev.test_start == (test + step_extra) * bar
        train_bars = idx.get_loc(f.train_end) - idx.get_loc(f.train_start) + 1
        if rolling:
            assert train_bars <= train_min + train_max_extra
        else:
            assert f.train_start == idx[0]
        assert train_bars >= train_min
        prev = f


def test_start_and_end_restrict_the_folds_to_a_sub_period():
    idx = _index(1500)
    folds = make_folds(idx, WalkForwardConfig(start="2020-06-01", end="2023-06-30"))
    assert folds[0].train_start == pd.Timestamp("2020-06-01", tz="UTC")
    assert folds[-1].test_end <= pd.Timestamp("2023-06-30", tz="UTC")
    assert all(f.test_start + pd.Timedelta("30D") <= pd.Timestamp("2023-06-30", tz="UTC") for f in folds)
