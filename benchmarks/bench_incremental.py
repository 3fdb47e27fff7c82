"""Incremental vs batch features: time per appended bar, state memory, and agreement (issue 12 item 2).

One run, side by side, settings printed beside every figure:

    python benchmarks/bench_incremental.py [--assets 200] [--days 730] [--bars 30]

A simulated market of `--assets` perps on 8h bars over `--days` days, with the simulator's six
macro factors plus two derived ones (eight factors) and the two benchmarks (BTC, the crypto
composite).  The engine is warm-started on all but the last `--bars` bars (`from_panel`), then
appends them one at a time; the batch side recomputes `compute_feature_arrays` over the whole
history, which is what serving does today for every new bar.  Memory: the bytes of all feature
state (ring buffers, recursions) per asset, and the RSS of a fresh process that only restores
the saved state (what a service holds for the features).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from adaptive_beta.models.data.publication import us_close_utc
from adaptive_beta.models.data.schema import FactorSeries, build_panel, infer_category
from adaptive_beta.models.features.compute import compute_feature_arrays
from adaptive_beta.models.features.incremental import IncrementalFeatures, PanelBars
from adaptive_beta.models.features.spec import FeatureSpec
from adaptive_beta.models.sim.config import SimConfig
from adaptive_beta.models.sim.simulator import simulate

_RESTORE = """
import sys, time
t0 = time.perf_counter()
from adaptive_beta.models.features.incremental import IncrementalFeatures
base = int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])
t1 = time.perf_counter()
engine = IncrementalFeatures.from_bytes(open(sys.argv[1], 'rb').read())
t2 = time.perf_counter()
rss = int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])
print(base, rss, t2 - t1, len(engine.symbols))
"""


def market(n_assets: int, days: int, seed: int = 5):
    """The simulated panel with eight factors (six simulated, QQQ and EURUSD derived from them)."""
    sim = simulate(SimConfig(n_assets=n_assets, days=days, freq="8h", seed=seed))
    factors = {}
    for name, df in sim.factors.items():
        factors[name] = (pd.DatetimeIndex(df["date"]), df["close"].to_numpy())
    rng = np.random.default_rng(seed)
    dates, spx = factors["SPX"]
    factors["QQQ"] = (dates, spx / 10.0 * np.exp(np.cumsum(rng.normal(0, 0.004, len(spx)))))
    dates, dxy = factors["DXY"]
    factors["EURUSD"] = (dates, 105.0 / dxy * np.exp(np.cumsum(rng.normal(0, 0.002, len(dxy)))))
    published = {
        name: FactorSeries(pd.Series(v, index=us_close_utc(d)), infer_category(name), "us_close")
        for name, (d, v) in factors.items()
    }
    return build_panel(sim.assets, published)


def rss_kib() -> int:
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1])


def restored_rss(blob: bytes) -> tuple[int, int, float]:
    """(RSS after imports, RSS with the restored state, restore seconds) of a fresh process, KiB."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.npz"
        path.write_bytes(blob)
        out = subprocess.run(
            [sys.executable, "-c", _RESTORE, str(path)], capture_output=True, text=True, check=True
        ).stdout.split()
    return int(out[0]), int(out[1]), float(out[2])


def run(n_assets: int, days: int, n_bars: int) -> list[tuple[str, str, str]]:
    spec = FeatureSpec()
    t0 = time.perf_counter()
    panel = market(n_assets, days)
    t_sim = time.perf_counter() - t0
    total = len(panel.index)
    warm = panel.slice(end=panel.index[total - n_bars - 1])

    t0 = time.perf_counter()
    engine = IncrementalFeatures.from_panel(warm, spec)
    t_warm = time.perf_counter() - t0
    bars = PanelBars(panel, engine.symbols)
    times, rows = [], []
    for i in range(total - n_bars, total):
        t0 = time.perf_counter()
        rows.append(engine.append(bars.bar(i)).values)
        times.append(time.perf_counter() - t0)

    batch_times = []
    for _ in range(2):
        t0 = time.perf_counter()
        fa = compute_feature_arrays(panel, spec)
        batch_times.append(time.perf_counter() - t0)
    got = np.stack(rows)
    want = np.stack([np.asarray(fa.arrays[c])[total - n_bars :] for c in engine.columns], axis=2)
    same_nan = bool(np.array_equal(np.isnan(got), np.isnan(want)))
    ok = ~np.isnan(got) & ~np.isnan(want)
    max_diff = float(np.max(np.abs(got[ok] - want[ok])))

    state_bytes = sum(a.nbytes for a in engine.store.arrays().values())
    blob = engine.to_bytes()
    base_kib, restored_kib, t_restore = restored_rss(blob)
    per_bar = np.array(times) * 1e3
    shape = f"{n_assets} assets x {total} bars of 8h ({days} d), {len(panel.factor_names)} factors, "
    shape += f"{len(panel.benchmark_names)} benchmarks, {len(engine.columns)} features, default spec"
    return [
        (
            "settings",
            shape,
            f"python {platform.python_version()}, {platform.machine()}, simulate {t_sim:.1f} s",
        ),
        (
            "incremental append, per bar (ms)",
            f"p50 {np.median(per_bar):.2f}, max {per_bar.max():.2f}",
            f"{n_bars} bars appended after warm start",
        ),
        (
            "batch recompute, per bar (ms)",
            f"{min(batch_times) * 1e3:.0f}",
            "compute_feature_arrays over the whole history, best of 2",
        ),
        ("speed-up (batch / incremental p50)", f"{min(batch_times) * 1e3 / np.median(per_bar):.0f}x", ""),
        (
            "max |incremental - batch|",
            f"{max_diff:.2e}",
            f"NaN patterns identical: {same_nan}; {got.size} values",
        ),
        ("warm start from panel (s)", f"{t_warm:.1f}", f"replay of {total - n_bars} bars"),
        (
            "feature state, total (MiB)",
            f"{state_bytes / 2**20:.1f}",
            f"{len(engine.store.slots)} arrays; saved npz {len(blob) / 2**20:.1f} MiB",
        ),
        (
            "feature state per asset (KiB)",
            f"{state_bytes / n_assets / 2**10:.0f}",
            "all ring buffers and recursions / assets",
        ),
        (
            "RSS, fresh process, state restored (MiB)",
            f"{restored_kib / 1024:.0f}",
            f"{base_kib / 1024:.0f} MiB after imports; restore {t_restore * 1e3:.0f} ms",
        ),
        ("RSS of this benchmark process (MiB)", f"{rss_kib() / 1024:.0f}", "panel + batch features + engine"),
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--assets", type=int, default=200)
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--bars", type=int, default=30, help="bars appended (and timed) after the warm start")
    args = ap.parse_args(argv)
    table = run(args.assets, args.days, args.bars)
    width = max(len(r[0]) for r in table)
    vwidth = max(len(r[1]) for r in table)
    for name, value, note in table:
        print(f"{name:<{width}}  {value:<{vwidth}}  {note}")


if __name__ == "__main__":
    main()
