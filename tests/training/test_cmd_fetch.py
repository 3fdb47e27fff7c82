"""`abeta data fetch binance|ccxt` against a local server of recorded files (no network).

The server (tests/training/market_server.py) serves tests/fixtures/binance_vision in the
data.binance.vision layout and the Binance USD-M REST answers ccxt reads; the fetched folder
must load with `load_dataset` (what `abeta data validate` and `abeta train --data` call).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adaptive_beta.cli.main import app
from adaptive_beta.models.data.loaders import load_dataset
from tests.training.market_server import FIXTURES, MarketServer

ARCHIVE = FIXTURES / "binance_vision"
KLINES_JAN = "data/futures/um/monthly/klines/BTCUSDT/8h/BTCUSDT-8h-2024-01.zip"


@pytest.fixture
def server():
    with MarketServer() as s:
        yield s


def fetch_binance(server: MarketServer, out: Path, *extra: str):
    args = ["data", "fetch", "binance", "BTCUSDT", "ETHUSDT", "--start", "2024-01-30", "--end", "2024-02-03"]
    args += ["--out", str(out), "--base-url", server.url, "--backoff", "0", *extra]
    return CliRunner().invoke(app, args)


def summary_line(output: str) -> str:
    return next(line for line in output.splitlines() if "already complete" in line)


def test_binance_fetch_writes_a_dataset_that_loads_with_the_recorded_values(server, tmp_path):
    out = tmp_path / "binance"
    result = fetch_binance(server, out)
    assert result.exit_code == 0, result.output
    # 2 symbols x (Jan monthly klines + 2 Feb daily klines + 2 monthly funding + 4 daily metrics)
    assert summary_line(result.output) == (
        "18 downloaded, 0 resumed, 0 already complete; 18 verified by sha256; 2 not published"
    )
    panel = load_dataset(out)
    assert panel.symbols == ["BTCUSDT", "ETHUSDT"] and panel.freq == pd.Timedelta("8h")
    idx = panel.close.index
    assert (idx[0], idx[-1], len(idx)) == (
        pd.Timestamp("2024-01-30", tz="UTC"),
        pd.Timestamp("2024-02-02 16:00", tz="UTC"),
        12,
    )
    recorded = pd.read_csv(ARCHIVE / "data/futures/um/daily/klines/ETHUSDT/8h/ETHUSDT-8h-2024-02-02.zip")
    assert panel.close["ETHUSDT"].iloc[-3:].tolist() == recorded["close"].tolist()
    assert panel.volume["BTCUSDT"].notna().all()
    # funding: the print at 08:00:00.00x goes to the bar closing at 08:00 (the 00:00 bar)
    funding = pd.read_csv(
        ARCHIVE / "data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-02.zip"
    )
    feb1 = panel.funding_rate["BTCUSDT"].loc["2024-02-01 00:00"]
    assert feb1 == pytest.approx(funding["last_funding_rate"].iloc[1])
    # open interest: the last 5-minute observation at or before each bar close
    metrics = pd.read_csv(ARCHIVE / "data/futures/um/daily/metrics/ETHUSDT/ETHUSDT-metrics-2024-02-01.zip")
    at_close = metrics.loc[metrics["create_time"] == "2024-02-01 08:00:00", "sum_open_interest"].item()
    assert panel.open_interest["ETHUSDT"].loc["2024-02-01 00:00"] == at_close
    toml = (out / "dataset.toml").read_text()
    assert 'funding = "funding/{symbol}.csv"' in toml and 'btc = "BTCUSDT"' in toml
    validate = CliRunner().invoke(app, ["data", "validate", str(out)])
    assert validate.exit_code == 0 and "panel: 2 assets x 12 bars of 8h" in validate.stdout


def test_rerun_skips_verified_files_and_resumes_a_partial_one_with_a_range_request(server, tmp_path):
    out = tmp_path / "binance"
    assert fetch_binance(server, out).exit_code == 0
    first = (out / "assets" / "BTCUSDT.csv").read_bytes()
    zip_path = out / "raw" / KLINES_JAN
    whole = zip_path.read_bytes()
    zip_path.unlink()
    zip_path.with_name(zip_path.name + ".part").write_bytes(whole[:1000])  # an interrupted download
    server.log.clear()
    again = fetch_binance(server, out)
    assert again.exit_code == 0, again.output
    assert (
        summary_line(again.output)
        == "0 downloaded, 1 resumed, 17 already complete; 18 verified by sha256; 2 not published"
    )
    zip_gets = [h for h in server.log if h[0].endswith(".zip") and h[2] != 404]  # 404: Feb monthly
    assert zip_gets == [(f"/{KLINES_JAN}", "bytes=1000-", 206)]  # nothing else downloaded again
    assert zip_path.read_bytes() == whole and not zip_path.with_name(zip_path.name + ".part").exists()
    assert (out / "assets" / "BTCUSDT.csv").read_bytes() == first


def test_corrupt_files_fail_the_checksum_and_are_downloaded_again(server, tmp_path):
    out = tmp_path / "binance"
    assert fetch_binance(server, out, "--no-funding", "--no-open-interest").exit_code == 0
    zip_path = out / "raw" / KLINES_JAN
    good = zip_path.read_bytes()
    zip_path.write_bytes(b"x" * len(good))  # complete but wrong
    part = out / "raw" / KLINES_JAN.replace("BTCUSDT", "ETHUSDT")
    part.unlink()
    part.with_name(part.name + ".part").write_bytes(b"garbage")  # a partial file that is not a prefix
    server.log.clear()
    again = fetch_binance(server, out, "--no-funding", "--no-open-interest")
    assert again.exit_code == 0, again.output
    assert zip_path.read_bytes() == good
    expected = (ARCHIVE / KLINES_JAN.replace("BTCUSDT", "ETHUSDT")).read_bytes()
    assert hashlib.sha256(part.read_bytes()).hexdigest() == hashlib.sha256(expected).hexdigest()
    eth = [h[1:] for h in server.log if h[0].endswith("ETHUSDT-8h-2024-01.zip")]
    assert eth == [("bytes=7-", 206), (None, 200)]  # resumed, failed the checksum, restarted


def test_429_and_5xx_are_retried_and_a_server_that_keeps_failing_exits_2(server, tmp_path):
    server.fail[f"/{KLINES_JAN}"] = [503, 429]
    ok = fetch_binance(server, tmp_path / "a", "--no-funding", "--no-open-interest")
    assert ok.exit_code == 0, ok.output
    assert [h[2] for h in server.hits(KLINES_JAN) if h[0].endswith(".zip")] == [503, 429, 200]
    server.fail[f"/{KLINES_JAN}"] = [500] * 10
    bad = fetch_binance(server, tmp_path / "b", "--no-funding", "--no-open-interest", "--retries", "2")
    assert bad.exit_code == 2
    assert "HTTP 500" in bad.output and KLINES_JAN in bad.output


def test_unknown_symbol_and_bad_dates_exit_2(server, tmp_path):
    args = ["data", "fetch", "binance", "NOPEUSDT", "--start", "2024-01-30", "--end", "2024-02-02"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o"), "--base-url", server.url])
    assert result.exit_code == 2 and "no klines published for NOPEUSDT" in result.output
    args = ["data", "fetch", "binance", "BTCUSDT", "--start", "2024-02-02", "--end", "2024-01-30"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o"), "--base-url", server.url])
    assert result.exit_code == 2 and "is not after --start" in result.output


def test_base_url_setting_and_progress_bar(server, tmp_path, monkeypatch):
    monkeypatch.setenv("ABETA_BINANCE_DATA_URL", server.url)
    args = ["data", "fetch", "binance", "BTCUSDT", "--start", "2024-02-01", "--end", "2024-02-03"]
    args += ["--out", str(tmp_path / "o"), "--no-funding", "--no-open-interest", "--progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "archive months" in result.stderr and "1/1" in result.stderr
    assert len(load_dataset(tmp_path / "o").close) == 6


def fetch_ccxt(server: MarketServer, out: Path, *extra: str):
    args = ["data", "fetch", "ccxt", "binanceusdm", "BTC/USDT:USDT", "ETH/USDT:USDT"]
    args += ["--start", "2024-01-01", "--end", "2024-02-01", "--out", str(out), "--base-url", server.url]
    return CliRunner().invoke(app, [*args, "--backoff", "0", *extra])


def test_ccxt_fetch_pages_through_klines_and_funding_and_loads(server, tmp_path):
    out = tmp_path / "ccxt"
    result = fetch_ccxt(server, out)
    assert result.exit_code == 0, result.output
    assert "    93 new bars" in result.output and "    93 new prints" in result.output
    assert len(server.hits("/fapi/v1/klines")) == 2 * 3  # 93 bars in pages of 40
    panel = load_dataset(out)
    recorded = json.loads((FIXTURES / "ccxt_binanceusdm" / "klines-BTCUSDT-8h.json").read_text())
    assert panel.close["BTCUSDT"].tolist() == [float(r[4]) for r in recorded]
    prints = json.loads((FIXTURES / "ccxt_binanceusdm" / "fundingRate-ETHUSDT.json").read_text())
    # bar [00:00, 08:00) receives the print made at 08:00 (+ms jitter)
    assert panel.funding_rate["ETHUSDT"].iloc[0] == pytest.approx(float(prints[1]["fundingRate"]))
    assert np.isnan(panel.funding_rate["ETHUSDT"].iloc[-1])  # its print (Feb 1 00:00) is past --end


def test_ccxt_rerun_resumes_after_the_last_row_and_retries_429(server, tmp_path):
    out = tmp_path / "ccxt"
    assert fetch_ccxt(server, out, "--end", "2024-01-20", "--no-funding").exit_code == 0
    assert len(pd.read_csv(out / "assets" / "BTCUSDT.csv")) == 57
    server.fail["/fapi/v1/klines"] = [429, 502]
    server.log.clear()
    again = fetch_ccxt(server, out, "--no-funding")
    assert again.exit_code == 0, again.output
    assert "    36 new bars" in again.output and "retry in" in again.output
    frame = pd.read_csv(out / "assets" / "BTCUSDT.csv")
    assert len(frame) == 93 and frame["timestamp"].is_monotonic_increasing and frame["timestamp"].is_unique
    assert [h[2] for h in server.hits("/fapi/v1/klines")][:3] == [429, 502, 200]


def test_ccxt_unknown_exchange_and_symbol_exit_2(server, tmp_path):
    args = [
        "data",
        "fetch",
        "ccxt",
        "binanceusdn",
        "BTC/USDT:USDT",
        "--start",
        "2024-01-01",
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "did you mean 'binanceusdm'" in result.output
    args = ["data", "fetch", "ccxt", "binanceusdm", "DOGE/USDT:USDT", "--start", "2024-01-01"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o"), "--base-url", server.url])
    assert result.exit_code == 2 and "DOGE/USDT:USDT" in result.output


def bash_blocks(markdown: Path) -> list[str]:
    text = markdown.read_text()
    return [block.split("```", 1)[0] for block in text.split("```bash\n")[1:]]


def test_docs_data_input_commands_run_as_written(server, tmp_path):
    """Every ```bash block of docs/data-input.md, verbatim, with the base URLs set to the local server."""
    import os
    import shutil
    import subprocess
    import sys

    exe = shutil.which("abeta") or str(Path(sys.executable).parent / "abeta")
    if not Path(exe).exists():
        pytest.skip("abeta console script not installed in this environment")
    env = {
        **os.environ,
        "PATH": f"{Path(exe).parent}{os.pathsep}{os.environ['PATH']}",
        "ABETA_BINANCE_DATA_URL": server.url,
        "ABETA_CCXT_URL": server.url,
    }
    blocks = bash_blocks(Path(__file__).resolve().parents[2] / "docs" / "data-input.md")
    assert len(blocks) == 3
    outputs = []
    for block in blocks:
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, (block, run.stdout, run.stderr)
        outputs.append(run.stdout)
    assert "panel: 2 assets x 3 bars of 1d (2024-01-01 .. 2024-01-03)" in outputs[0]
    assert "panel: 2 assets x 99 bars of 8h (2024-01-01 .. 2024-02-02)" in outputs[1]
    assert "panel: 2 assets x 93 bars of 8h (2024-01-01 .. 2024-01-31)" in outputs[2]
