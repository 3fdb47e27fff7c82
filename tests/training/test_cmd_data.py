"""`abeta data validate`: a summary and exit 0 for a good dataset, every problem and exit 2 otherwise."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adaptive_beta.cli.main import app


def good_folder(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "factors").mkdir()
    rows = "".join(f"2024-01-{d:02d},{100 + d}\n" for d in range(1, 11))
    (root / "assets" / "BTCUSDT.csv").write_text("timestamp,close\n" + rows)
    (root / "assets" / "ETHUSDT.csv").write_text("timestamp,close\n" + rows)
    (root / "factors" / "SPY.csv").write_text("date,close\n2024-01-02,470\n2024-01-03,472\n")
    return root


def bad_folder(root: Path) -> Path:
    good_folder(root)
    (root / "assets" / "ETHUSDT.csv").write_text("timestamp,close\n2024-01-01,1\n2024-01-02,-2\nlater,3\n")
    (root / "factors" / "SPY.csv").write_text("date,close\n2024-01-02,470\n2024-01-02,471\n")
    return root


def test_validate_good_folder_prints_files_and_panel_and_exits_0(tmp_path):
    result = CliRunner().invoke(app, ["data", "validate", str(good_folder(tmp_path / "ds"))])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert sum(line.startswith("ok    asset") for line in lines) == 2
    assert any(line.startswith("ok    factor") and "equity, published us_close" in line for line in lines)
    assert "panel: 2 assets x 10 bars of 1d (2024-01-01 .. 2024-01-10)" in result.stdout


def test_validate_bad_folder_prints_every_problem_and_exits_2(tmp_path):
    ds = bad_folder(tmp_path / "ds")
    result = CliRunner().invoke(app, ["data", "validate", str(ds)])
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    eth, spy = ds / "assets" / "ETHUSDT.csv", ds / "factors" / "SPY.csv"
    assert errors == [
        f"error: file {eth}, row 3, column 'timestamp': unparseable timestamp",
        f"error: file {eth}, row 2, column 'close': price must be strictly positive",
        f"error: file {spy}, row 2, column 'date': duplicate timestamp (same as the previous row)",
    ]
    assert "3 problems in" in result.stderr


def test_validate_missing_path_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["data", "validate", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_abeta_console_script_in_subprocess(tmp_path):
    exe = shutil.which("abeta") or str(Path(sys.executable).parent / "abeta")
    if not Path(exe).exists():
        pytest.skip("abeta console script not installed in this environment")
    good = subprocess.run(
        [exe, "data", "validate", str(good_folder(tmp_path / "g"))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert good.returncode == 0, good.stderr
    assert "panel: 2 assets x 10 bars of 1d" in good.stdout
    bad = subprocess.run(
        [exe, "data", "validate", str(bad_folder(tmp_path / "b"))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "row 2, column 'close': price must be strictly positive" in bad.stderr


def test_validate_new_york_midnight_bars_agrees_with_load_and_names_the_fix(tmp_path):
    import numpy as np
    import pandas as pd

    ds = tmp_path / "ny"
    (ds / "assets").mkdir(parents=True)
    local = pd.date_range("2020-01-01", periods=1800, freq="D", tz="America/New_York")
    for sym in ("BTCUSDT", "ETHUSDT"):
        pd.DataFrame(
            {
                "timestamp": local.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S"),
                "close": np.linspace(1, 2, 1800),
            }
        ).to_csv(ds / "assets" / f"{sym}.csv", index=False)
    result = CliRunner().invoke(app, ["data", "validate", str(ds)])
    assert result.exit_code == 2
    assert [line[:5] for line in result.stdout.splitlines()] == ["ERROR", "ERROR"]  # no "ok" above the errors
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2  # one per file, not ~1,800 grid errors
    assert all('timezone = "America/New_York" and date_only = true' in e for e in errors)
    (ds / "dataset.toml").write_text('timezone = "America/New_York"\ndate_only = true\n')
    fixed = CliRunner().invoke(app, ["data", "validate", str(ds)])
    assert fixed.exit_code == 0, fixed.output
    assert "panel: 2 assets x 1800 bars of 1d (2020-01-01 .. 2024-12-04)" in fixed.stdout
