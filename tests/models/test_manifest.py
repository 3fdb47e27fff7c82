"""Manifest schema: defaults that run, every key checked, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from adaptive_beta.models.data.manifest import Manifest, parse_manifest, read_manifest
from adaptive_beta.models.data.schema import DataError


def test_empty_manifest_has_defaults_that_run():
    m = parse_manifest({}, "m.toml")
    assert (m.name, m.root, m.freq, m.btc, m.composite, m.max_staleness) == (
        "dataset",
        ".",
        None,
        None,
        "equal",
        "5d",
    )
    assert m.assets == [] and m.factors == [] and m.assets_glob is None


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"nmae": "x"}, "nmae"),
        ({"assets": [{"symbol": "A", "path": "a.csv", "colour": "red"}]}, "assets[0].colour"),
        ({"factors": [{"name": "SPY", "path": "s.csv", "calender": "us_close"}]}, "factors[0].calender"),
        ({"assets_glob": {"path": "*.csv", "fundng": "x"}}, "assets_glob.fundng"),
    ],
)
def test_unknown_key_is_an_error_naming_it(data, key):
    with pytest.raises(DataError) as e:
        parse_manifest(data, "m.toml")
    assert e.value.column == key and e.value.file == "m.toml"
    assert f"unknown manifest key {key!r}" in e.value.message


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        (
            {"factors": [{"name": "SPY", "path": "s.csv", "calendar": "noon"}]},
            "factors[0].calendar",
            "us_close",
        ),
        (
            {"factors": [{"name": "SPY", "path": "s.csv", "category": "stocks"}]},
            "factors[0].category",
            "unknown category",
        ),
        (
            {"factors": [{"name": "SPY", "path": "s.csv", "lag": "soon"}]},
            "factors[0].lag",
            "invalid duration",
        ),
        ({"freq": "eight hours"}, "freq", "invalid duration"),
        ({"composite": "cap"}, "(top level)", "[weights]"),
        ({"assets": [{"symbol": "A"}]}, "assets[0].path", "required"),
        (
            {"assets": [{"symbol": "A", "path": "a.csv"}, {"symbol": "A", "path": "b.csv"}]},
            "(top level)",
            "listed twice",
        ),
    ],
)
def test_invalid_values_name_the_key(data, key, fragment):
    with pytest.raises(DataError) as e:
        parse_manifest(data, "m.toml")
    assert e.value.column == key
    assert fragment in e.value.message


def test_overrides_replace_settings_and_are_checked():
    m = parse_manifest({"freq": "8h"}, "m.toml", {"freq": "1d", "btc": "ETHUSDT"})
    assert (m.freq, m.btc) == ("1d", "ETHUSDT")
    with pytest.raises(DataError, match="unknown manifest key 'frequency'"):
        parse_manifest({}, "m.toml", {"frequency": "1d"})


def test_read_manifest_toml_and_yaml_resolve_root_and_hash_text(tmp_path: Path):
    (tmp_path / "data").mkdir()
    t = tmp_path / "a.toml"
    t.write_text('root = "data"\nfreq = "8h"\n')
    y = tmp_path / "a.yaml"
    y.write_text("root: data\nfreq: 8h\n")
    mt, root_t, digest_t = read_manifest(t)
    my, root_y, digest_y = read_manifest(y)
    assert mt == my and isinstance(mt, Manifest)
    assert root_t == root_y == (tmp_path / "data").resolve()
    import hashlib

    assert digest_t == hashlib.sha256(t.read_bytes()).hexdigest()
    assert len(digest_t) == 64 and digest_t != digest_y


def test_broken_toml_and_non_mapping_yaml_are_data_errors(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("root = \n")
    with pytest.raises(DataError, match="not valid TOML") as e:
        read_manifest(bad)
    assert e.value.file == str(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n")
    with pytest.raises(DataError, match="mapping"):
        read_manifest(lst)


def test_missing_manifest_and_missing_root(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist"):
        read_manifest(tmp_path / "none.toml")
    m = tmp_path / "m.toml"
    m.write_text('root = "gone"\n')
    with pytest.raises(DataError) as e:
        read_manifest(m)
    assert e.value.column == "root" and "'gone' does not exist" in e.value.message


@pytest.mark.parametrize("name", ["binance-perps-8h.toml", "yahoo-crypto-daily.toml", "binance-hourly.toml"])
def test_shipped_manifests_parse(name):
    import tomllib

    path = Path(__file__).resolve().parents[2] / "docs" / "datasets" / name
    m = parse_manifest(tomllib.loads(path.read_text()), str(path))
    assert m.root == "../../../shared/data/real"
    assert {f.name for f in m.factors} == {"SPY", "QQQ", "GLD", "DXY", "VIX", "WTI", "DGS10", "EUR"}
    eur = next(f for f in m.factors if f.name == "EUR")
    assert eur.transform == "invert"


def test_unknown_key_pth_is_unknown_with_did_you_mean_not_a_missing_path():
    with pytest.raises(DataError) as e:
        parse_manifest({"assets": [{"symbol": "A", "pth": "a.csv"}]}, "m.toml")
    assert e.value.column == "assets[0].pth"
    assert e.value.message == "unknown manifest key 'assets[0].pth'; did you mean 'path'?"
    assert "required" not in str(e.value)


def test_every_manifest_error_is_reported_in_one_go():
    data = {
        "nmae": "x",
        "freq": "eight hours",
        "timezone": "America/New_Yrok",
        "assets": [{"symbol": "A", "pth": "a.csv"}, {"symbol": "B"}],
        "factors": [{"name": "SPY", "path": "s.csv", "calender": "us_close"}],
    }
    with pytest.raises(DataError) as e:
        parse_manifest(data, "m.toml")
    errors = e.value.errors
    assert sorted(err.column for err in errors) == [
        "assets[0].pth",
        "assets[1].path",
        "factors[0].calender",
        "freq",
        "nmae",
        "timezone",
    ]
    by_key = {err.column: err.message for err in errors}
    assert by_key["nmae"].endswith("did you mean 'name'?")
    assert by_key["factors[0].calender"].endswith("did you mean 'calendar'?")
    assert by_key["assets[1].path"] == "manifest key 'assets[1].path' is required"  # B really has none
    assert "did you mean 'America/New_York'" in by_key["timezone"]
    text = str(e.value)
    assert text.startswith("file m.toml: 6 problems in the manifest:")
    assert all(err.message in text for err in errors)


def test_time_and_layout_keys_at_top_level_and_per_entry():
    m = parse_manifest(
        {
            "timestamp_column": "Date",
            "timezone": "America/New_York",
            "date_only": True,
            "layout": "wide",
            "assets": [{"symbol": "A", "path": "a.csv", "timezone": "UTC", "layout": "long"}],
            "assets_glob": {"path": "*.csv", "date_only": False, "layout": "single"},
            "factors": [{"name": "SPY", "path": "s.csv", "timestamp_column": "when"}],
        },
        "m.toml",
    )
    assert (m.timestamp_column, m.timezone, m.date_only, m.layout) == (
        "Date",
        "America/New_York",
        True,
        "wide",
    )
    assert (m.assets[0].timezone, m.assets[0].layout, m.assets[0].date_only) == ("UTC", "long", None)
    assert (m.assets_glob.date_only, m.assets_glob.layout) == (False, "single")
    assert m.factors[0].timestamp_column == "when"
    with pytest.raises(DataError, match="'layout'"):
        parse_manifest({"layout": "tall"}, "m.toml")


def test_validate_lists_each_manifest_error_on_its_own_line(tmp_path: Path):
    from adaptive_beta.models.data.loaders import validate_dataset

    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "dataset.toml").write_text('nmae = "x"\nfreq = "soon"\n')
    errors = validate_dataset(tmp_path / "ds")
    assert [err.column for err in errors] == ["freq", "nmae"]
