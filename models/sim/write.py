"""Write a simulated market as a convention folder that `load_dataset(dir)` reads.

Layout: `assets/<SYMBOL>.csv` (timestamp ISO 8601 UTC, open, high, low, close, volume,
funding_rate, open_interest), `factors/<NAME>.csv` (date, close; US trading dates only),
`truth/betas.parquet`, `truth/market.parquet`, `dataset.toml` (the manifest: name, freq, BTC
benchmark), `simulation.toml` (the full simulator config) and a `README.md`.  The folder
appears atomically: everything is written to a hidden sibling temp folder and renamed into
place, so a reader never sees half a dataset.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from adaptive_beta.models.data.schema import COMPOSITE_NAME, infer_category
from adaptive_beta.models.sim.config import FACTOR_NAMES, REGIME_NAMES, matching_preset, stationary_shares

if TYPE_CHECKING:
    from adaptive_beta.models.sim.simulator import SimResult

FLOAT_FORMAT = "%.12g"  # 12 significant digits: returns from the files match to ~1e-12


def write_simulation(result: SimResult, out_dir: str | Path, force: bool = False) -> Path:
    """Write `result` to `out_dir` atomically; refuse a non-empty existing folder unless `force`."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another --out path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} exists and is not empty; pass force=True (--force) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _write_tree(result, tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.rename(out, old / "x")
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_tree(result: SimResult, root: Path) -> None:
    (root / "assets").mkdir()
    (root / "factors").mkdir()
    (root / "truth").mkdir()
    clock, labels = None, None  # the assets mostly share one clock: format it once
    for sym, frame in result.assets.items():
        if clock is None or not (frame.index is clock or frame.index.equals(clock)):
            clock = frame.index
            labels = pd.Index(clock.strftime("%Y-%m-%dT%H:%M:%SZ"), name="timestamp")
        (root / "assets" / f"{sym}.csv").write_text(_csv_text(frame, labels), encoding="utf-8")
    for name, frame in result.factors.items():
        df = frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d"))
        df.to_csv(
            root / "factors" / f"{name}.csv", index=False, float_format=FLOAT_FORMAT, lineterminator="\n"
        )
    result.truth_betas.reset_index().to_parquet(root / "truth" / "betas.parquet", index=False)
    result.truth_market.reset_index().to_parquet(root / "truth" / "market.parquet", index=False)
    (root / "simulation.toml").write_text(config_toml(result), encoding="utf-8")
    (root / "dataset.toml").write_text(dataset_toml(result), encoding="utf-8")
    (root / "README.md").write_text(readme(result), encoding="utf-8")


def _csv_text(frame: pd.DataFrame, labels: pd.Index) -> str:
    """The bytes of `frame.to_csv(float_format=FLOAT_FORMAT, lineterminator="\\n")` with the
    index replaced by `labels`: float columns as %.12g, NaN as "" (no field needs quoting).

    pandas formats each value through a per-value closure with NaN checks and then runs the csv
    writer (most of the write at universe scale, 200 s wall at 200 perps x 2 years hourly);
    one %-format per value and joining the lines in C are several times faster, same bytes
    (tests/models/test_sim_write_fast.py).
    """
    columns = [[str(x) for x in labels]]
    for c in frame.columns:
        values = frame[c].to_numpy(dtype=np.float64, na_value=np.nan)
        columns.append([FLOAT_FORMAT % v if v == v else "" for v in values.tolist()])
    header = ",".join([labels.name or "", *map(str, frame.columns)])
    return header + "\n" + "".join(",".join(row) + "\n" for row in zip(*columns, strict=True))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dataset_toml(result: SimResult) -> str:
    """The folder's manifest (models/data/manifest.py keys only; files follow the folder convention)."""
    cfg = result.config
    return (
        f"# Simulated by Adaptive Beta: seed {cfg.seed}, {cfg.n_assets} assets, {cfg.days} days of {cfg.freq}"
        f" bars from {cfg.start}, preset {matching_preset(cfg) or 'custom'}.\n# The full simulator"
        " configuration is in simulation.toml; truth/ holds the true betas.\n"
        f'name = "sim-seed{cfg.seed}-{cfg.n_assets}a-{cfg.days}d-{cfg.freq}"\n'
        f'freq = "{cfg.freq}"\n'
        f'btc = "{cfg.symbols[0]}"\n'
        'composite = "equal"\n'
    )


def config_toml(result: SimResult) -> str:
    """The full SimConfig as TOML (regime correlations as `A__B = value`): enough to regenerate."""
    cfg = result.config
    lines = [
        "# Adaptive Beta simulator configuration: `abeta data simulate` with these values",
        f"# preset: {matching_preset(cfg) or 'custom (no named preset)'}",
        "[simulator]",
    ]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "regimes":
            continue
        lines.append(f"# {f.name}: not set" if value is None else f"{f.name} = {_toml_value(value)}")
    for name, rp in zip(REGIME_NAMES, cfg.regimes, strict=True):
        lines += ["", f"[regimes.{name}]"]
        for f in dataclasses.fields(rp):
            if f.name != "corr":
                lines.append(f"{f.name} = {_toml_value(getattr(rp, f.name))}")
        lines += ["", f"[regimes.{name}.corr]"]
        lines += [f"{a}__{b} = {v!r}" for (a, b), v in sorted(rp.corr.items())]
    return "\n".join(lines) + "\n"


def readme(result: SimResult) -> str:
    cfg = result.config
    tm = result.truth_market
    shares = tm["regime_name"].value_counts(normalize=True).reindex(REGIME_NAMES, fill_value=0.0)
    expected = stationary_shares(cfg.regimes)
    btc = cfg.symbols[0]
    tb = result.truth_betas
    mean_beta = tb.groupby(level="symbol", sort=False)[[f"beta_{btc}", f"beta_{COMPOSITE_NAME}"]].mean()
    rows = "\n".join(
        f"| {s} | {r[f'beta_{btc}']:.3f} | {r[f'beta_{COMPOSITE_NAME}']:.3f} |"
        for s, r in mean_beta.iterrows()
    )
    regimes = "\n".join(
        f"| {n} | {cfg.regimes[k].duration_days:g} | {shares[n]:.1%} | {expected[k]:.1%} |"
        for k, n in enumerate(REGIME_NAMES)
    )
    cats = ", ".join(f"{n} ({infer_category(n)})" for n in FACTOR_NAMES)
    preset = matching_preset(cfg) or "custom"
    preset_arg = " --preset legacy" if preset == "legacy" else ""
    first, last = tm.index[0], tm.index[-1]
    return f"""# Simulated crypto perps market (Adaptive Beta simulator)

Generated by `abeta data simulate --seed {cfg.seed} --assets {cfg.n_assets} --days {cfg.days} --freq {cfg.freq}{preset_arg}`
(start {cfg.start}; preset {preset}); the full configuration is in `simulation.toml`. Same seed, same files.

- {cfg.n_assets} assets x {len(tm)} bars of {cfg.freq} ({first:%Y-%m-%d} .. {last:%Y-%m-%d}), `assets/<SYMBOL>.csv`:
  timestamp = bar open (UTC), OHLC, volume and open interest in base units, funding_rate = sum of the
  8-hourly funding prints in the bar's (open, close].
- Factors on US trading dates (weekdays minus Jan 1, Jun 19, Jul 4, Dec 25), `factors/<NAME>.csv`,
  close published at 16:00 New York: {cats}. DGS10 is a yield in percent.
- Ground truth in `truth/`: `betas.parquet` (timestamp, symbol, beta_{btc}, beta_{COMPOSITE_NAME},
  beta_<FACTOR> = population multiple-regression loadings on the six factors) and `market.parquet`
  (timestamp, regime, regime_name, var_{btc}, var_{COMPOSITE_NAME}). Row t describes the return of bar t.

| regime | expected duration (days) | share here | long-run share |
|---|---|---|---|
{regimes}

| symbol | mean true beta to {btc} | mean true beta to {COMPOSITE_NAME} |
|---|---|---|
{rows}

Mean true {COMPOSITE_NAME} beta across assets: {float(np.mean(mean_beta[f"beta_{COMPOSITE_NAME}"])):.6f} (1 by construction).
"""
