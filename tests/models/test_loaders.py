"""Loaders: every reader format, every validation error (file/row/column), publication times,
funding/open-interest aggregation, folder round trip, composite weights and the real manifests."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.models.data.loaders import (
    base_symbol,
    coarsen,
    inspect_dataset,
    load_dataset,
    validate_dataset,
)
from adaptive_beta.models.data.publication import (
    funding_per_bar,
    open_interest_per_bar,
    publication_times,
    us_close_utc,
)
from adaptive_beta.models.data.readers import from_ccxt, parse_timestamps, read_binance_klines, read_prices
from adaptive_beta.models.data.schema import DataError
from adaptive_beta.models.data.validation import DatasetErrors

DOCS = Path(__file__).resolve().parents[2] / "docs" / "datasets"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def one_error(errors: list[DataError]) -> DataError:
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


# --- readers -------------------------------------------------------------------------------------
def test_generic_csv_aliases_give_close_volume_and_utc_index(tmp_path):
    f = write(
        tmp_path / "x.csv",
        "Date,Open,Close,Adj Close,Volume\n2024-01-02,1,10.5,10.4,100\n2024-01-03,1,11,10.9,200\n",
    )
    df = read_prices(f)
    assert list(df.columns) == ["close", "volume"]
    assert df.index[0] == ts("2024-01-02") and str(df.index.tz) == "UTC"
    assert df["close"].tolist() == [10.5, 11.0]  # `Close` preferred over `Adj Close`
    assert df["volume"].tolist() == [100.0, 200.0]


def test_explicit_column_picks_adjusted_close(tmp_path):
    f = write(tmp_path / "x.csv", "Date,Close,Adj Close\n2024-01-02,10.5,10.4\n2024-01-03,11,10.9\n")
    assert read_prices(f, column="Adj Close")["close"].tolist() == [10.4, 10.9]


def test_parquet_with_datetime_index_named_datetime(tmp_path):
    idx = pd.date_range("2024-01-01", periods=3, freq="8h", tz="UTC", name="datetime").as_unit("ms")
    pd.DataFrame({"open": 1.0, "close": [1.0, 2.0, 3.0], "volume": 5.0}, index=idx).to_parquet(
        tmp_path / "p.parquet"
    )
    df = read_prices(tmp_path / "p.parquet")
    assert df.index.tolist() == [ts("2024-01-01 00:00"), ts("2024-01-01 08:00"), ts("2024-01-01 16:00")]
    assert df.index.unit == "ns"
    assert df["close"].tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("scale", [1, 1_000, 1_000_000])
def test_epoch_seconds_milliseconds_and_microseconds_read_the_same(tmp_path, scale):
    s0 = 1_704_067_200  # 2024-01-01 00:00 UTC
    f = write(tmp_path / "e.csv", f"open_time,close\n{s0 * scale},1\n{(s0 + 3600) * scale},2\n")
    assert read_prices(f).index.tolist() == [ts("2024-01-01 00:00"), ts("2024-01-01 01:00")]


def test_iso_timestamps_with_offsets_convert_to_utc():
    got = parse_timestamps(pd.Series(["2024-01-01T02:00:00+02:00", "2024-01-01T01:00:00Z"]))
    assert got.tolist() == [ts("2024-01-01 00:00"), ts("2024-01-01 01:00")]


def test_yyyymmdd_integers_are_dates_not_epoch_seconds():
    assert parse_timestamps(pd.Series([20200101, 20200201])).tolist() == [ts("2020-01-01"), ts("2020-02-01")]


def test_long_file_with_symbol_column_gives_one_frame_per_symbol(tmp_path):
    f = write(
        tmp_path / "long.csv",
        "timestamp,symbol,close\n2024-01-01,AAA,1\n2024-01-01,BBB,5\n2024-01-02,AAA,2\n2024-01-02,BBB,6\n",
    )
    out = read_prices(f)
    assert set(out) == {"AAA", "BBB"}
    assert out["BBB"]["close"].tolist() == [5.0, 6.0]


BINANCE_ROW = "{t},100.0,101.0,99.0,{c},12.5,{t2},1250.0,42,6.0,600.0,0\n"


def test_binance_kline_csv_without_header_ms_then_us(tmp_path):
    ms = 1_735_603_200_000  # 2024-12-31 00:00 UTC in ms
    rows = BINANCE_ROW.format(t=ms, c=100.5, t2=ms + 86_399_999)
    us = (ms + 86_400_000) * 1000  # 2025-01-01 in microseconds (Binance spot from 2025)
    rows += BINANCE_ROW.format(t=us, c=101.5, t2=us + 86_399_999_999)
    df = read_binance_klines(write(tmp_path / "BTCUSDT-1d.csv", rows))
    assert df.index.tolist() == [ts("2024-12-31"), ts("2025-01-01")]
    assert df["close"].tolist() == [100.5, 101.5]
    assert df["volume"].tolist() == [12.5, 12.5]


def test_binance_kline_csv_with_header(tmp_path):
    header = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n"
    ms = 1_704_067_200_000
    f = write(
        tmp_path / "k.csv",
        header
        + BINANCE_ROW.format(t=ms, c=7.0, t2=ms + 1)
        + BINANCE_ROW.format(t=ms + 3_600_000, c=8.0, t2=ms + 2),
    )
    df = read_binance_klines(f)
    assert df.index.tolist() == [ts("2024-01-01 00:00"), ts("2024-01-01 01:00")]
    assert df["close"].tolist() == [7.0, 8.0]


def test_from_ccxt_rows():
    ms = 1_704_067_200_000
    df = from_ccxt([[ms, 1, 2, 0.5, 1.5, 10], [ms + 28_800_000, 1.5, 2, 1, 1.8, 20]], "BTC/USDT")
    assert df.index.tolist() == [ts("2024-01-01 00:00"), ts("2024-01-01 08:00")]
    assert df["close"].tolist() == [1.5, 1.8]


def test_from_ccxt_rejects_non_positive_close_naming_row():
    with pytest.raises(DataError) as e:
        from_ccxt([[0, 1, 1, 1, 1, 1], [28_800_000, 1, 1, 1, 0.0, 1]], "ETH/USDT")
    assert (e.value.file, e.value.row, e.value.column) == ("ccxt ETH/USDT", 2, "close")


# --- validation errors name file, row, column ----------------------------------------------------
def dataset(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        write(tmp_path / "ds" / name, text)
    return tmp_path / "ds"


GOOD = "timestamp,close\n2024-01-01,1\n2024-01-02,2\n2024-01-03,3\n"


@pytest.mark.parametrize(
    ("text", "row", "column", "fragment"),
    [
        ("timestamp,price_x\n2024-01-01,1\n", None, "close", "missing close column"),
        ("time_x,close\n2024-01-01,1\n", None, "timestamp", "missing timestamp column"),
        ("timestamp,close\n2024-01-01,1\n2024-13-45,2\n", 2, "timestamp", "unparseable timestamp"),
        ("timestamp,close\n2024-01-01,1\n2024-01-02,2\n2024-01-02,3\n", 3, "timestamp", "duplicate"),
        ("timestamp,close\n2024-01-02,1\n2024-01-01,2\n", 2, "timestamp", "not sorted"),
        ("timestamp,close\n2024-01-01,1\n2024-01-02,0\n", 2, "close", "strictly positive"),
        ("timestamp,close\n2024-01-01,1\n2024-01-02,-3\n", 2, "close", "strictly positive"),
        ("timestamp,close\n2024-01-01,1\n2024-01-02,\n", 2, "close", "not finite"),
        ("timestamp,close\n2024-01-01,1\n2024-01-02,inf\n", 2, "close", "not finite"),
        ("timestamp,close\n2024-01-01,1\n2024-01-02,abc\n", 2, "close", "not a number"),
        ("timestamp,close\n", None, None, "no data rows"),
        ("", None, None, "empty"),
        ("timestamp,close,volume\n2024-01-01,1,5\n2024-01-02,2,-1\n", 2, "volume", "negative"),
    ],
)
def test_each_error_names_file_row_and_column(tmp_path, text, row, column, fragment):
    ds = dataset(tmp_path, {"assets/BTCUSDT.csv": text, "assets/ETHUSDT.csv": GOOD})
    err = one_error(validate_dataset(ds))
    assert err.file == str(ds / "assets" / "BTCUSDT.csv")
    assert (err.row, err.column) == (row, column)
    assert fragment in err.message


def test_validate_collects_all_errors_across_files_and_load_raises_aggregate(tmp_path):
    ds = dataset(
        tmp_path,
        {
            "assets/BTCUSDT.csv": "timestamp,close\n2024-01-01,1\n2024-01-02,-1\nnot-a-date,3\n",
            "assets/ETHUSDT.csv": "date,close\n2024-01-01,1\n2024-01-01,2\n",
            "factors/SPY.csv": "date,close\n2024-01-02,470\n2024-01-03,nan\n",
        },
    )
    errors = validate_dataset(ds)
    where = sorted((Path(e.file).name, e.row, e.column) for e in errors)
    assert where == [
        ("BTCUSDT.csv", 2, "close"),
        ("BTCUSDT.csv", 3, "timestamp"),
        ("ETHUSDT.csv", 2, "date"),
        ("SPY.csv", 2, "close"),
    ]
    with pytest.raises(DatasetErrors) as e:
        load_dataset(ds)
    assert len(e.value.errors) == 4
    assert "3 more problems" in str(e.value)


def test_many_bad_rows_are_listed_up_to_five_then_counted(tmp_path):
    body = "".join(f"2024-01-{d:02d},-1\n" for d in range(1, 13))
    ds = dataset(tmp_path, {"assets/BTCUSDT.csv": "timestamp,close\n" + body})
    errors = validate_dataset(ds)
    assert [e.row for e in errors] == [1, 2, 3, 4, 5, None]
    assert "7 more rows" in errors[-1].message


def test_factor_may_be_negative_but_not_missing(tmp_path):
    ok = dataset(
        tmp_path / "a",
        {"assets/BTCUSDT.csv": GOOD, "factors/WTI.csv": "Date,Price\n2024-01-01,-36.98\n2024-01-02,10\n"},
    )
    panel = load_dataset(ok)
    # the 2024-01-01 close (21:00 UTC) is seen by the daily bar closing 2024-01-02 00:00
    assert panel.factors["WTI"].tolist()[:2] == [-36.98, 10.0]
    bad = dataset(
        tmp_path / "b",
        {"assets/BTCUSDT.csv": GOOD, "factors/WTI.csv": "Date,Price\n2024-01-01,-36.98\n2024-01-02,\n"},
    )
    err = one_error(validate_dataset(bad))
    assert (Path(err.file).name, err.row, err.column) == ("WTI.csv", 2, "Price")


def test_off_grid_timestamp_is_an_error(tmp_path):
    text = "timestamp,close\n2024-01-01 00:00,1\n2024-01-01 08:00,2\n2024-01-01 16:00,3\n2024-01-01 23:00,4\n2024-01-02 08:00,5\n"
    err = one_error(validate_dataset(dataset(tmp_path, {"assets/BTCUSDT.csv": text})))
    assert (err.row, err.column) == (4, "timestamp") and "grid" in err.message


def test_missing_dataset_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope")


# --- publication times ---------------------------------------------------------------------------
def test_us_close_is_16_new_york_in_utc_across_dst():
    dates = pd.DatetimeIndex(["2024-03-08", "2024-03-11", "2024-11-01", "2024-11-04"])
    got = us_close_utc(dates)
    assert got.tolist() == [
        ts("2024-03-08 21:00"),
        ts("2024-03-11 20:00"),
        ts("2024-11-01 20:00"),
        ts("2024-11-04 21:00"),
    ]


def test_calendars_and_lag():
    days = pd.DatetimeIndex(["2024-01-01", "2024-01-02"], tz="UTC")
    assert publication_times(days, "utc_close").tolist() == [ts("2024-01-02"), ts("2024-01-03")]
    assert publication_times(days, "us_close", pd.Timedelta("1D"))[0] == ts("2024-01-02 21:00")
    hours = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00"], tz="UTC")
    assert publication_times(hours, "bar_open").tolist() == [
        ts("2024-01-01 01:00"),
        ts("2024-01-01 02:00"),
        ts("2024-01-01 03:00"),
    ]
    assert publication_times(hours, "timestamp").tolist() == hours.tolist()


def hourly_asset(start: str, hours: int) -> str:
    idx = pd.date_range(start, periods=hours, freq="1h", tz="UTC")
    return "timestamp,close\n" + "".join(f"{t:%Y-%m-%dT%H:%M:%SZ},{100 + i}\n" for i, t in enumerate(idx))


@pytest.mark.parametrize(
    ("day", "first_bar"), [("2024-03-11", "2024-03-11 19:00"), ("2024-03-08", "2024-03-08 20:00")]
)
def test_us_close_reaches_first_hourly_bar_closing_after_it(tmp_path, day, first_bar):
    """A US close on a DST date (20:00 UTC) informs the bar closing at 20:00, in winter 21:00."""
    ds = dataset(
        tmp_path,
        {
            "assets/BTCUSDT.csv": hourly_asset(f"{day} 12:00", 12),
            "factors/SPY.csv": f"date,close\n{day},500\n",
        },
    )
    spy = load_dataset(ds).factors["SPY"]
    assert spy.first_valid_index() == ts(first_bar)
    assert (
        spy.loc[ts(first_bar) - pd.Timedelta("1h")] != spy.loc[ts(first_bar) - pd.Timedelta("1h")]
    )  # NaN before


def test_crypto_benchmark_daily_factor_is_published_at_end_of_utc_day(tmp_path):
    ds = dataset(
        tmp_path,
        {
            "assets/ETHUSDT.csv": hourly_asset("2024-01-01 20:00", 6),
            "factors/BTC-USD.csv": "date,close\n2024-01-01,42000\n",
        },
    )
    panel = load_dataset(ds)
    assert panel.factor_categories["BTC-USD"] == "crypto_benchmark"
    assert panel.factors["BTC-USD"].first_valid_index() == ts("2024-01-01 23:00")  # bar closing at 24:00


# --- funding and open interest -------------------------------------------------------------------
def test_funding_prints_with_ms_jitter_go_to_the_bar_closing_at_them():
    prints = pd.Series(
        [0.0001, 0.0002, 0.0003, 0.0004],
        index=pd.DatetimeIndex(
            [
                "2024-01-01 00:00:00.001",
                "2024-01-01 08:00:00.002",
                "2024-01-01 16:00",
                "2024-01-02 00:00:00.005",
            ],
            tz="UTC",
        ),
    )
    bars8 = pd.date_range("2024-01-01", periods=3, freq="8h", tz="UTC")
    assert funding_per_bar(prints, bars8, pd.Timedelta("8h")).tolist() == [0.0002, 0.0003, 0.0004]
    day = pd.DatetimeIndex(["2023-12-31", "2024-01-01"], tz="UTC")
    assert funding_per_bar(prints, day, pd.Timedelta("1D")).to_numpy() == pytest.approx([0.0001, 0.0009])
    hours = pd.date_range("2024-01-01 06:00", periods=4, freq="1h", tz="UTC")
    assert funding_per_bar(prints, hours, pd.Timedelta("1h")).tolist() == [0.0, 0.0002, 0.0, 0.0]
    late = pd.date_range("2024-01-02 08:00", periods=2, freq="8h", tz="UTC")
    assert np.isnan(funding_per_bar(prints, late, pd.Timedelta("8h"))).all()  # after the last print: unknown


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=24 * 20), min_size=1, max_size=30, unique=True))
def test_funding_sum_is_conserved_when_bars_cover_the_prints(hours_after):
    paid = pd.DatetimeIndex(
        sorted(pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=h) for h in hours_after)
    )
    prints = pd.Series(np.linspace(-1e-3, 2e-3, len(paid)), index=paid)
    bars = pd.date_range("2024-01-01", periods=21 * 3, freq="8h", tz="UTC")
    per_bar = funding_per_bar(prints, bars, pd.Timedelta("8h"))
    assert per_bar.sum() == pytest.approx(prints.sum(), abs=1e-12)


def test_open_interest_is_last_value_at_or_before_close_and_not_carried_past_a_gap():
    obs = pd.Series(
        [1.0, 2.0, 3.0, 4.0],
        index=pd.DatetimeIndex(
            ["2024-01-01 07:00", "2024-01-01 08:00", "2024-01-01 09:00", "2024-01-01 10:00"], tz="UTC"
        ),
    )
    bars = pd.date_range("2024-01-01", periods=4, freq="8h", tz="UTC")
    got = open_interest_per_bar(obs, bars, pd.Timedelta("8h"))
    assert got.iloc[0] == 2.0  # close 08:00 sees the 08:00 observation
    assert got.iloc[1] == 4.0  # close 16:00: last is 10:00 (6 h old, within 8 h + 1 h)
    assert np.isnan(got.iloc[2]) and np.isnan(got.iloc[3])  # 14 h and 22 h old: feed stopped


def test_coarsen_hourly_to_8h_keeps_complete_groups_only():
    idx = pd.date_range("2024-01-01", periods=20, freq="1h", tz="UTC")
    frame = pd.DataFrame({"close": np.arange(1.0, 21.0), "volume": 1.0}, index=idx)
    out = coarsen(frame, pd.Timedelta("1h"), pd.Timedelta("8h"))
    assert out.index.tolist() == [ts("2024-01-01 00:00"), ts("2024-01-01 08:00")]
    assert out["close"].tolist() == [8.0, 16.0]
    assert out["volume"].tolist() == [8.0, 8.0]


# --- folder round trip, manifests, composite weights ---------------------------------------------
def make_folder(root: Path) -> Path:
    idx = pd.date_range("2024-01-01", periods=9, freq="8h", tz="UTC")
    for k, sym in enumerate(["BTCUSDT", "ETHUSDT"]):
        df = pd.DataFrame(
            {
                "open": 1.0,
                "close": 100.0 * (k + 1) + np.arange(9),
                "volume": 10.0,
                "funding_rate": 1e-4 * (k + 1),
                "open_interest": 50.0 + np.arange(9),
            },
            index=idx.strftime("%Y-%m-%dT%H:%M:%SZ").rename("timestamp"),
        )
        write(root / "assets" / f"{sym}.csv", df.to_csv(lineterminator="\n"))
    write(root / "factors" / "SPY.csv", "date,close\n2024-01-01,470\n2024-01-02,475\n")
    (root / "truth").mkdir()
    pd.DataFrame(
        {"timestamp": np.repeat(idx, 2), "symbol": ["BTCUSDT", "ETHUSDT"] * 9, "beta_BTCUSDT": 1.0}
    ).to_parquet(root / "truth" / "betas.parquet", index=False)
    pd.DataFrame({"timestamp": idx, "regime": 0, "regime_name": "calm", "var_BTCUSDT": 1e-4}).to_parquet(
        root / "truth" / "market.parquet", index=False
    )
    return root


def test_folder_round_trip_with_truth(tmp_path):
    root = make_folder(tmp_path / "sim")
    panel = load_dataset(root)
    assert panel.freq == pd.Timedelta("8h") and panel.symbols == ["BTCUSDT", "ETHUSDT"]
    assert panel.close["ETHUSDT"].tolist() == [200.0 + i for i in range(9)]
    assert panel.funding_rate["ETHUSDT"].iloc[0] == pytest.approx(2e-4)
    assert panel.open_interest["BTCUSDT"].iloc[-1] == 58.0
    # SPY 2024-01-01 close published 21:00 UTC -> first bar closing after: 16:00 bar (closes 24:00)
    assert panel.factors["SPY"].first_valid_index() == ts("2024-01-01 16:00")
    assert panel.factors["SPY"].loc[ts("2024-01-02 16:00")] == 475.0
    tb, tm = panel.meta["truth_betas"], panel.meta["truth_market"]
    assert tb.index.names == ["timestamp", "symbol"] and len(tb) == 18
    assert str(tb.index.get_level_values("timestamp").tz) == "UTC"
    assert tm.index.name == "timestamp" and tm["regime_name"].iloc[0] == "calm"
    assert panel.meta["source"] == str(root.resolve())
    assert len(panel.meta["manifest_sha256"]) == 64
    assert panel.benchmark_names == ["BTCUSDT", "CRYPTO_EW"]


def test_folder_digest_changes_when_a_file_changes(tmp_path):
    root = make_folder(tmp_path / "sim")
    before = load_dataset(root).meta["manifest_sha256"]
    with open(root / "factors" / "SPY.csv", "a") as fh:
        fh.write("2024-01-03,480\n")
    assert load_dataset(root).meta["manifest_sha256"] != before


def test_dataset_toml_in_folder_applies_and_overrides_win(tmp_path):
    root = make_folder(tmp_path / "sim")
    write(root / "dataset.toml", 'name = "sim"\nbtc = "ETHUSDT"\n')
    panel = load_dataset(root)
    assert panel.benchmark_names == ["ETHUSDT", "CRYPTO_EW"] and panel.meta["dataset"] == "sim"
    assert load_dataset(root, btc="BTCUSDT").benchmark_names == ["BTCUSDT", "CRYPTO_EW"]


def test_yaml_manifest_with_calendar_timestamp_and_invert(tmp_path):
    root = make_folder(tmp_path / "sim")
    write(root / "fx.csv", "timestamp,value\n2024-01-01T10:00:00Z,0.8\n2024-01-02T10:00:00Z,0.5\n")
    m = write(
        tmp_path / "m.yaml",
        "root: sim\nassets:\n  - {symbol: BTCUSDT, path: assets/BTCUSDT.csv}\n"
        "factors:\n  - {name: EURUSD, path: fx.csv, calendar: timestamp, transform: invert}\n",
    )
    panel = load_dataset(m)
    eur = panel.factors["EURUSD"]
    assert eur.first_valid_index() == ts("2024-01-01 08:00")  # bar closing 16:00 sees 10:00
    assert eur.loc[ts("2024-01-02 08:00")] == pytest.approx(2.0)
    assert panel.factor_categories["EURUSD"] == "fx"


def test_manifest_errors_name_the_key(tmp_path):
    root = make_folder(tmp_path / "sim")
    bad_btc = write(
        tmp_path / "a.toml",
        'root = "sim"\nbtc = "XYZ"\n[[assets]]\nsymbol = "BTCUSDT"\npath = "assets/BTCUSDT.csv"\n',
    )
    err = one_error(validate_dataset(bad_btc))
    assert (err.file, err.column) == (str(bad_btc), "btc") and "XYZ" in err.message
    bad_path = write(
        tmp_path / "b.toml", 'root = "sim"\n[[assets]]\nsymbol = "BTCUSDT"\npath = "assets/NOPE.csv"\n'
    )
    err = one_error(validate_dataset(bad_path))
    assert (err.file, err.column) == (str(bad_path), "assets[0].path")
    bad_factor = write(tmp_path / "c.toml", 'root = "sim"\n[[factors]]\nname = "SPY"\npath = "nope.csv"\n')
    err = one_error(validate_dataset(bad_factor))
    assert err.column == "factors[0].path"
    no_root = write(tmp_path / "d.toml", 'root = "missing/folder"\n')
    with pytest.raises(DataError) as e:
        load_dataset(no_root)
    assert (e.value.file, e.value.column) == (str(no_root), "root")
    assert root.is_dir()


def test_assets_glob_with_symbol_templates(tmp_path):
    root = tmp_path / "data"
    idx = pd.date_range("2024-01-01", periods=4, freq="8h", tz="UTC", name="datetime")
    for sym in ["BTCUSDT", "SOLUSDT"]:
        (root / "ohlcv").mkdir(parents=True, exist_ok=True)
        (root / "fund").mkdir(exist_ok=True)
        pd.DataFrame({"close": [1.0, 2.0, 3.0, 4.0]}, index=idx).to_parquet(root / "ohlcv" / f"{sym}.parquet")
        prints = idx + pd.Timedelta("8h") + pd.Timedelta("1ms")
        pd.DataFrame({"funding_rate": [1e-4, 2e-4, 3e-4, 4e-4]}, index=prints.rename("datetime")).to_parquet(
            root / "fund" / f"{sym}.parquet"
        )
    m = write(
        tmp_path / "g.toml",
        'root = "data"\n[assets_glob]\npath = "ohlcv/*.parquet"\nfunding = "fund/{symbol}.parquet"\n',
    )
    panel = load_dataset(m)
    assert panel.symbols == ["BTCUSDT", "SOLUSDT"]
    assert panel.funding_rate["SOLUSDT"].tolist() == [1e-4, 2e-4, 3e-4, 4e-4]


def test_cap_weighted_composite_uses_caps_from_the_day_after_the_snapshot(tmp_path):
    root = tmp_path / "d"
    write(
        root / "assets" / "BTCUSDT.csv", "timestamp,close\n2024-01-01,100\n2024-01-02,110\n2024-01-03,121\n"
    )
    write(root / "assets" / "ETHUSDT.csv", "timestamp,close\n2024-01-01,10\n2024-01-02,10\n2024-01-03,9\n")
    write(
        root / "caps.csv",
        "Rank,Symbol,Market Cap,snapshot_date\n1,BTC,300,20231231\n2,ETH,100,20231231\n"
        "1,BTC,100,20240101\n2,ETH,300,20240101\n",
    )
    m = write(
        tmp_path / "m.toml",
        'root = "d"\ncomposite = "cap"\n[weights]\npath = "caps.csv"\n'
        '[[assets]]\nsymbol = "BTCUSDT"\npath = "assets/BTCUSDT.csv"\n[[assets]]\nsymbol = "ETHUSDT"\npath = "assets/ETHUSDT.csv"\n',
    )
    comp = load_dataset(m).benchmark_returns()["CRYPTO_EW"]
    # bar opening 2024-01-01 (its return is NaN: first bar); bar opening 2024-01-02 uses the
    # 2024-01-01 snapshot (usable from 2024-01-02 00:00): 0.25 * 10% + 0.75 * 0%, not the
    # 2023-12-31 weights (0.75 * 10% = 7.5%)
    assert comp.loc[ts("2024-01-02")] == pytest.approx(0.025)
    assert comp.loc[ts("2024-01-03")] == pytest.approx(0.25 * 0.10 + 0.75 * -0.10)


def test_base_symbol_strips_quote_currency():
    assert [base_symbol(s) for s in ["BTCUSDT", "ETH-USD", "SOL/USDT:USDT", "DOGE"]] == [
        "BTC",
        "ETH",
        "SOL",
        "DOGE",
    ]


def test_inspect_reports_one_summary_per_file(tmp_path):
    report = inspect_dataset(make_folder(tmp_path / "sim"))
    roles = sorted(f.role for f in report.files)
    assert roles == ["asset", "asset", "factor", "truth", "truth"]
    assert all(f.ok for f in report.files) and report.panel is not None


# --- real data -----------------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_binance_8h_manifest_loads(real_data_dir):
    t0 = time.perf_counter()
    panel = load_dataset(DOCS / "binance-perps-8h.toml")
    seconds = time.perf_counter() - t0
    assert seconds < 15
    assert len(panel.symbols) == 11 and panel.freq == pd.Timedelta("8h")
    btc = panel.close.loc["2022-11-09", "BTCUSDT"]
    assert btc.between(15_900, 18_300).all() and btc.iloc[-1] == pytest.approx(15_905, abs=1)
    assert {"SPY", "QQQ", "GLD", "DXY", "VIX", "WTI", "DGS10", "EUR"} <= set(panel.factor_names)
    # WTI -36.98 (2020-04-20, published 20:00 UTC) is first seen by the bar closing 2020-04-21 00:00
    assert panel.factors.loc[ts("2020-04-20 16:00"), "WTI"] == pytest.approx(-36.98)
    assert panel.factors.loc[ts("2020-04-20 08:00"), "WTI"] != pytest.approx(-36.98)
    # EUR per USD 1.0399 on 2022-09-27 -> EURUSD 1/1.0399, with a one-day lag
    assert panel.factors.loc[ts("2022-09-28 16:00"), "EUR"] == pytest.approx(1 / 1.0399, rel=1e-6)
    assert panel.funding_rate["BTCUSDT"].iloc[0] == pytest.approx(-0.00012383, abs=1e-7)
    assert panel.open_interest["BTCUSDT"].notna().sum() > 5000


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("name", "n_assets", "freq"), [("yahoo-crypto-daily.toml", 11, "1d"), ("binance-hourly.toml", 2, "1h")]
)
def test_other_real_manifests_load(real_data_dir, name, n_assets, freq):
    panel = load_dataset(DOCS / name)
    assert len(panel.symbols) == n_assets and panel.freq == pd.Timedelta(freq)
    assert panel.close.notna().all(axis=None) if freq == "1h" else True


@pytest.mark.realdata
def test_real_manifest_with_missing_root_is_a_clear_error(real_data_dir, tmp_path):
    text = (
        (DOCS / "binance-perps-8h.toml")
        .read_text()
        .replace('root = "../../../shared/data/real"', 'root = "no/such/dir"')
    )
    m = write(tmp_path / "moved.toml", text)
    with pytest.raises(DataError) as e:
        load_dataset(m)
    assert e.value.column == "root" and "does not exist" in e.value.message


def test_factor_drop_missing_skips_fred_dots_and_keeps_row_numbers_for_other_errors(tmp_path):
    fred = "date,value\n2024-01-01,4.0\n2024-01-02,.\n2024-01-03,4.2\n"
    ds = dataset(tmp_path / "a", {"assets/BTCUSDT.csv": GOOD, "factors/DGS10.csv": fred})
    err = one_error(validate_dataset(ds))
    assert (err.row, err.column, err.message) == (2, "value", "value is not a number")
    m = write(
        tmp_path / "a" / "m.toml",
        'root = "ds"\n[[assets]]\nsymbol = "BTCUSDT"\npath = "assets/BTCUSDT.csv"\n'
        '[[factors]]\nname = "DGS10"\npath = "factors/DGS10.csv"\ndrop_missing = true\n',
    )
    panel = load_dataset(m)
    assert panel.factor_categories["DGS10"] == "rates"
    assert panel.factors["DGS10"].tolist() == [4.0, 4.0, 4.2]  # the 01-02 holiday carries 01-01 forward


def test_invert_of_zero_names_the_source_row_after_dropped_cells(tmp_path):
    root = dataset(
        tmp_path, {"assets/BTCUSDT.csv": GOOD, "fx.csv": "date,value\n2024-01-01,.\n2024-01-02,0\n"}
    )
    m = write(
        tmp_path / "m.toml",
        'root = "ds"\n[[assets]]\nsymbol = "BTCUSDT"\npath = "assets/BTCUSDT.csv"\n'
        '[[factors]]\nname = "EUR"\npath = "fx.csv"\ntransform = "invert"\ndrop_missing = true\n',
    )
    err = one_error(validate_dataset(m))
    assert (err.file, err.row, err.column) == (str(root / "fx.csv"), 2, "value") and "invert" in err.message


def test_manifest_column_that_is_not_in_the_file_is_a_missing_column(tmp_path):
    dataset(tmp_path, {"assets/BTCUSDT.csv": GOOD})
    m = write(
        tmp_path / "m.toml",
        'root = "ds"\n[[assets]]\nsymbol = "BTCUSDT"\npath = "assets/BTCUSDT.csv"\ncolumn = "close_perp"\n',
    )
    err = one_error(validate_dataset(m))
    assert err.column == "close_perp" and "missing close column" in err.message


@pytest.mark.realdata
def test_real_cap_weighted_composite_from_coinmarketcap_snapshots(real_data_dir):
    cmc = {"path": "smoothbrainquant_cmc_monthly/coinmarketcap_monthly_all_snapshots.csv"}
    panel = load_dataset(DOCS / "binance-perps-8h.toml", composite="cap", weights=cmc)
    comp = panel.benchmarks["CRYPTO_EW"]
    assert comp.first_valid_index() == ts("2020-01-01 16:00")  # first snapshot 2020-01-01, usable 2020-01-02
    corr = panel.benchmark_returns().corr().loc["BTCUSDT", "CRYPTO_EW"]
    assert 0.95 < corr < 1.0  # BTC dominates the cap weights


def test_unreadable_weights_and_truth_files_are_data_errors(tmp_path):
    root = make_folder(tmp_path / "sim")
    (root / "truth" / "market.parquet").write_text("not parquet")
    (root / "caps.csv").write_text("")
    write(root / "dataset.toml", 'composite = "cap"\n[weights]\npath = "caps.csv"\n')
    errors = validate_dataset(root)
    assert sorted(Path(e.file).name for e in errors) == ["caps.csv", "market.parquet"]


def test_symbol_listed_and_globbed_is_an_error(tmp_path):
    make_folder(tmp_path / "sim")
    m = write(
        tmp_path / "m.toml",
        'root = "sim"\n[[assets]]\nsymbol = "BTCUSDT"\npath = "assets/BTCUSDT.csv"\n[assets_glob]\npath = "assets/*.csv"\n',
    )
    err = one_error(validate_dataset(m))
    assert err.column == "assets_glob" and "twice" in err.message
