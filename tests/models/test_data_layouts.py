"""Wide and long price files in folder mode, the manifest's time keys, and the time-zone hint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adaptive_beta.models.data.loaders import inspect_dataset, load_dataset, validate_dataset
from adaptive_beta.models.data.readers import parse_timestamps
from adaptive_beta.models.data.timezones import shift_hint

DAYS = pd.date_range("2024-01-01", periods=6, freq="D", tz="UTC")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def wide_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Date": DAYS.strftime("%Y-%m-%d"),
            "BTCUSDT": np.arange(100.0, 106.0),
            "ETHUSDT": np.arange(10.0, 16.0),
        }
    )


def long_frame() -> pd.DataFrame:
    w = wide_frame()
    long = w.melt(id_vars="Date", var_name="symbol", value_name="close").rename(columns={"Date": "timestamp"})
    long["volume"] = np.arange(len(long), dtype=float)
    return long[["symbol", "timestamp", "close", "volume"]]


def save(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("layout", ["wide", "long"])
def test_wide_and_long_files_in_folder_mode_give_one_asset_per_symbol(tmp_path, suffix, layout):
    frame = wide_frame() if layout == "wide" else long_frame()
    save(frame, tmp_path / "ds" / "assets" / f"prices{suffix}")
    panel = load_dataset(tmp_path / "ds")
    assert panel.symbols == ["BTCUSDT", "ETHUSDT"]
    assert panel.close["BTCUSDT"].tolist() == [100.0, 101.0, 102.0, 103.0, 104.0, 105.0]
    assert panel.close["ETHUSDT"].tolist() == [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    assert panel.close.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    if layout == "long":  # the other columns of a long file come along
        assert panel.volume["ETHUSDT"].tolist() == [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]


def test_wide_file_next_to_single_files_and_duplicate_symbol_is_an_error(tmp_path):
    ds = tmp_path / "ds"
    save(wide_frame()[["Date", "ETHUSDT"]].assign(SOLUSDT=1.5), ds / "assets" / "alts.csv")
    write(
        ds / "assets" / "BTCUSDT.csv",
        "timestamp,close\n" + "".join(f"{d:%Y-%m-%d},{i + 1}\n" for i, d in enumerate(DAYS)),
    )
    panel = load_dataset(ds)
    assert sorted(panel.symbols) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    save(wide_frame(), ds / "assets" / "more.csv")  # BTCUSDT and ETHUSDT again
    errors = validate_dataset(ds)
    assert [e.column for e in errors] == ["symbol", "symbol"]
    assert (
        "'ETHUSDT' appears in two files" in errors[0].message
        or "'BTCUSDT' appears in two files" in errors[0].message
    )


def test_bad_cell_in_wide_file_names_file_row_and_symbol_column(tmp_path):
    frame = wide_frame().astype({"ETHUSDT": object})
    frame.loc[2, "ETHUSDT"] = "abc"
    path = save(frame, tmp_path / "ds" / "assets" / "prices.csv")
    errors = validate_dataset(tmp_path / "ds")
    assert len(errors) == 1
    assert (errors[0].file, errors[0].row, errors[0].column) == (f"{path} [column ETHUSDT]", 3, "ETHUSDT")
    assert errors[0].message == "value is not a number"


def test_long_file_row_without_symbol_is_reported(tmp_path):
    frame = long_frame()
    frame.loc[4, "symbol"] = ""
    path = save(frame, tmp_path / "ds" / "assets" / "all.csv")
    errors = validate_dataset(tmp_path / "ds")
    assert [(e.file, e.row, e.column, e.message) for e in errors] == [
        (str(path), 5, "symbol", "missing symbol")
    ]


def test_layout_key_overrides_detection(tmp_path):
    ds = tmp_path / "ds"
    save(wide_frame()[["Date", "BTCUSDT"]], ds / "assets" / "one.csv")  # one column: read as a single file
    err = validate_dataset(ds)
    assert len(err) == 1 and "missing close column" in err[0].message
    write(ds / "dataset.toml", 'layout = "wide"\n')
    assert load_dataset(ds).symbols == ["BTCUSDT"]
    save(wide_frame()[["Date", "BTCUSDT"]].set_axis(["Date", "close"], axis=1), ds / "assets" / "one.csv")
    write(ds / "dataset.toml", 'layout = "long"\n')
    err = validate_dataset(ds)
    assert (
        len(err) == 1 and err[0].column == "symbol" and "long layout needs a symbol column" in err[0].message
    )


def test_timestamp_column_key_names_an_unusual_time_column(tmp_path):
    ds = tmp_path / "ds"
    write(ds / "assets" / "BTCUSDT.csv", "bar_start,close\n2024-01-01,1\n2024-01-02,2\n2024-01-03,3\n")
    err = validate_dataset(ds)
    assert len(err) == 1 and err[0].column == "timestamp" and "timestamp_column" in err[0].message
    write(ds / "dataset.toml", 'timestamp_column = "bar_start"\n')
    assert load_dataset(ds).close["BTCUSDT"].tolist() == [1.0, 2.0, 3.0]
    write(ds / "dataset.toml", 'timestamp_column = "start"\n')
    err = validate_dataset(ds)
    assert len(err) == 1 and err[0].column == "start"


def test_timezone_key_reads_naive_wall_clock_times_as_local():
    tokyo = parse_timestamps(pd.Series(["2024-01-01 09:00", "2024-07-01 09:00"]), "Asia/Tokyo")
    assert list(tokyo) == [
        pd.Timestamp("2024-01-01 00:00", tz="UTC"),
        pd.Timestamp("2024-07-01 00:00", tz="UTC"),
    ]
    ny = parse_timestamps(pd.Series(["2024-01-02", "2024-07-02"]), "America/New_York")
    assert [t.hour for t in ny] == [5, 4]  # EST, EDT
    aware = parse_timestamps(pd.Series(["2024-01-01T00:00:00+09:00"]), "America/New_York")
    assert aware[0] == pd.Timestamp("2023-12-31 15:00", tz="UTC")  # an offset wins over the zone


def test_timezone_key_converts_an_hourly_file_to_utc(tmp_path):
    ds = tmp_path / "ds"
    rows = "".join(f"2024-03-01 {h:02d}:00,{100 + h}\n" for h in range(9, 15))
    write(ds / "assets" / "BTCUSDT.csv", "timestamp,close\n" + rows)
    write(ds / "dataset.toml", 'timezone = "Asia/Tokyo"\n')
    close = load_dataset(ds).close["BTCUSDT"]
    assert close.index[0] == pd.Timestamp("2024-03-01 00:00", tz="UTC") and close.iloc[0] == 109.0


def new_york_midnight_folder(root: Path, days: int = 400) -> Path:
    """Daily bars stamped at New York midnight, written in UTC (04:00 / 05:00 by season)."""
    local = pd.date_range("2023-01-01", periods=days, freq="D", tz="America/New_York")
    for i, sym in enumerate(["BTCUSDT", "ETHUSDT"]):
        close = 100.0 * (i + 1) + np.arange(days)
        pd.DataFrame(
            {"timestamp": local.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ"), "close": close}
        ).to_csv(write(root / "assets" / f"{sym}.csv", ""), index=False)
    return root


def test_bars_stamped_at_new_york_midnight_get_one_time_zone_hint_per_file(tmp_path):
    ds = new_york_midnight_folder(tmp_path / "ny")
    report = inspect_dataset(ds)
    assert len(report.errors) == 2  # one per file, not one per bar
    err = report.errors[0]
    assert (err.file, err.row, err.column) == (str(ds / "assets" / "BTCUSDT.csv"), 1, "timestamp")
    assert "04:00 or 05:00 UTC" in err.message and "America/New_York" in err.message
    assert 'timezone = "America/New_York" and date_only = true' in err.message
    assert [f.ok for f in report.files] == [False, False]  # validate's file lines agree with load
    with pytest.raises(Exception, match="shifted by a time zone"):
        load_dataset(ds)


@pytest.mark.parametrize(
    "manifest", ['timezone = "America/New_York"\ndate_only = true\n', "date_only = true\n"]
)
def test_date_only_key_puts_local_midnight_bars_on_their_utc_date(tmp_path, manifest):
    ds = new_york_midnight_folder(tmp_path / "ny")
    write(ds / "dataset.toml", manifest)
    panel = load_dataset(ds)
    idx = panel.close.index
    assert len(idx) == 400 and idx[0] == pd.Timestamp("2023-01-01", tz="UTC")
    assert bool((idx.asi8 % 86_400_000_000_000 == 0).all())
    assert panel.close["ETHUSDT"].iloc[-1] == 200.0 + 399


def test_date_only_reads_tokyo_midnight_as_the_tokyo_date(tmp_path):
    ds = tmp_path / "ds"
    local = pd.date_range("2024-01-01", periods=5, freq="D", tz="Asia/Tokyo")
    text = "timestamp,close\n" + "".join(
        f"{t.tz_convert('UTC'):%Y-%m-%dT%H:%MZ},{i + 1}\n" for i, t in enumerate(local)
    )
    write(ds / "assets" / "BTCUSDT.csv", text)
    err = validate_dataset(ds)
    assert len(err) == 1 and "Asia/Tokyo" in err[0].message and "15:00 UTC" in err[0].message
    write(ds / "dataset.toml", 'timezone = "Asia/Tokyo"\ndate_only = true\n')
    assert load_dataset(ds).close.index[0] == pd.Timestamp("2024-01-01", tz="UTC")  # not 2023-12-31


def test_shift_hint_is_silent_for_grid_bars_and_irregular_offsets():
    day = pd.Timedelta("1D")
    assert shift_hint(DAYS, day) is None
    jitter = DAYS + pd.to_timedelta([0, 7, 13, 0, 2, 5], unit="min")
    assert shift_hint(jitter, day) is None
    assert shift_hint(DAYS + pd.Timedelta("3h"), day) is not None


def test_load_dataset_raises_one_error_listing_every_manifest_problem(tmp_path):
    from adaptive_beta.models.data.manifest import ManifestErrors

    write(tmp_path / "ds" / "dataset.toml", 'layout = "tall"\n[[assets]]\nsymbol = "A"\npth = "a.csv"\n')
    with pytest.raises(ManifestErrors) as e:
        load_dataset(tmp_path / "ds")
    assert [err.column for err in e.value.errors] == ["layout", "assets[0].pth"]
    assert "did you mean 'path'?" in str(e.value) and "'layout'" in str(e.value)


def test_raw_binance_funding_and_metrics_files_read_as_they_are(tmp_path):
    """The archive's own column names (calc_time, last_funding_rate, create_time, sum_open_interest)."""
    ds = tmp_path / "ds"
    opens = pd.date_range("2024-01-01", periods=6, freq="8h", tz="UTC")
    write(
        ds / "a.csv",
        "timestamp,close\n" + "".join(f"{t:%Y-%m-%dT%H:%M}Z,{i + 1}\n" for i, t in enumerate(opens)),
    )
    prints = "".join(
        f"{(t + pd.Timedelta('8h')).value // 10**6 + 2},8,0.000{i + 1}\n" for i, t in enumerate(opens)
    )
    write(ds / "f.csv", "calc_time,funding_interval_hours,last_funding_rate\n" + prints)
    metrics = "".join(
        f"{t + pd.Timedelta('8h'):%Y-%m-%d %H:%M:%S},BTCUSDT,{100 + i},1\n" for i, t in enumerate(opens)
    )
    write(ds / "oi.csv", "create_time,symbol,sum_open_interest,sum_open_interest_value\n" + metrics)
    write(
        ds / "m.toml",
        '[[assets]]\nsymbol = "BTCUSDT"\npath = "a.csv"\nfunding = "f.csv"\nopen_interest = "oi.csv"\n',
    )
    panel = load_dataset(ds / "m.toml")
    assert panel.funding_rate["BTCUSDT"].tolist() == pytest.approx([0.0001 * (i + 1) for i in range(6)])
    assert panel.open_interest["BTCUSDT"].tolist() == [100.0 + i for i in range(6)]


def test_bad_timestamp_in_a_wide_file_marks_every_symbol_of_it_as_an_error(tmp_path):
    frame = wide_frame()
    frame.loc[3, "Date"] = "someday"
    path = save(frame, tmp_path / "ds" / "assets" / "prices.csv")
    report = inspect_dataset(tmp_path / "ds")
    assert [(e.file, e.row, e.column) for e in report.errors] == [(str(path), 4, "Date")]
    assert [(f.name, f.ok) for f in report.files] == [("BTCUSDT", False), ("ETHUSDT", False)]
