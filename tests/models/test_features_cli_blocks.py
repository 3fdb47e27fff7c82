"""`abeta data features --block-assets N`: the streamed folder holds the one-file table (features,
forward targets, simulated true targets, regimes) bit for bit; operator errors exit 2 and
change nothing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.models.test_feature_blocks import panel  # noqa: F401  (7 simulated perps, with truth)


def run_cli(monkeypatch, panel, out, *args):  # noqa: F811
    import adaptive_beta.models.data.loaders
    from adaptive_beta.cli.main import run

    monkeypatch.setattr(adaptive_beta.models.data.loaders, "load_dataset", lambda path: panel)
    return run(["data", "features", "--data", "unused", "--out", str(out), "--horizon", "10d", *args])


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["timestamp", "symbol"], kind="stable").reset_index(drop=True)


@pytest.fixture(scope="module")
def one_file(panel, tmp_path_factory):  # noqa: F811
    mp = pytest.MonkeyPatch()
    out = tmp_path_factory.mktemp("one") / "feat.parquet"
    try:
        assert run_cli(mp, panel, out) == 0
    finally:
        mp.undo()
    return pd.read_parquet(out), json.loads(out.with_name("feat.meta.json").read_text())


@pytest.mark.parametrize("block_assets", ["1", "3"])
def test_streamed_blocks_hold_the_one_file_table(monkeypatch, panel, one_file, tmp_path, block_assets):  # noqa: F811
    ref, ref_meta = one_file
    out = tmp_path / "feat.parquet"
    assert run_cli(monkeypatch, panel, out, "--block-assets", block_assets) == 0
    assert out.is_dir() and len(list(out.glob("block-*.parquet"))) == -(-7 // int(block_assets))
    got = canonical(pd.read_parquet(out))
    assert list(got.columns) == list(ref.columns)
    assert any(c.startswith("target_true_") for c in got.columns)  # the truth was cut per block
    assert (got["symbol"].astype(str) == ref["symbol"].astype(str)).all()
    assert (got["timestamp"] == ref["timestamp"]).all()
    floats = [c for c in ref.columns if ref[c].dtype == np.float64]
    assert got[floats].to_numpy().tobytes() == ref[floats].to_numpy().tobytes()
    assert (
        (got[["regime_current", "regime_forward"]] == ref[["regime_current", "regime_forward"]]).all().all()
    )
    meta = json.loads(out.with_name("feat.meta.json").read_text())
    assert meta.pop("files") == -(-7 // int(block_assets))
    assert meta == ref_meta  # fingerprint of the whole panel, same columns and groups


@pytest.mark.parametrize(
    "args, message",
    [
        (["--block-assets", "-1"], "--block-assets must be >= 0"),
        (["--workers", "0"], "--workers must be >= 1, got 0"),
    ],
)
def test_bad_block_options_exit_2_naming_the_option(monkeypatch, panel, tmp_path, capsys, args, message):  # noqa: F811
    assert run_cli(monkeypatch, panel, tmp_path / "feat.parquet", *args) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_is_kept(monkeypatch, panel, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "feat.parquet"
    out.write_bytes(b"previous")
    assert run_cli(monkeypatch, panel, out, "--block-assets", "2") == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["feat.parquet"]
