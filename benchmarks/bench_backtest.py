"""Benchmark: overlay backtest cost per estimator path and stress scenarios, side by side in one run.

    python benchmarks/bench_backtest.py [--bars 2000] [--assets 10]

Prints bars per second of `simulate_overlay` for rebalancing every bar vs daily vs weekly (the
per-rebalance `hedge_overlay` call dominates), and `run_scenarios` latency for the default
scenario file (what the service's POST /stress pays per request).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd


def synthetic(bars: int, assets: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2022-01-01", periods=bars, freq="8h", tz="UTC")
    x = rng.normal(0, 0.02, bars)
    syms = ["BTCUSDT", "ETHUSDT", *(f"ALT{k}USDT" for k in range(assets - 2))]
    beta = rng.uniform(0.5, 2.0, len(syms))
    beta[0] = 1.0
    rets = pd.DataFrame(np.outer(x, beta) + rng.normal(0, 0.01, (bars, len(syms))), index=idx, columns=syms)
    fund = pd.DataFrame(rng.normal(1e-4, 1e-4, (bars, len(syms))), index=idx, columns=syms)
    fc = {"BTCUSDT": pd.DataFrame(np.tile(beta, (bars, 1)), index=idx, columns=syms)}
    return rets, pd.DataFrame({"BTCUSDT": rets["BTCUSDT"]}), fund, fc, syms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=2000)
    ap.add_argument("--assets", type=int, default=10)
    args = ap.parse_args()
    from adaptive_beta.models.portfolio.backtest import BacktestConfig, run_backtest

    rets, bench, fund, fc, syms = synthetic(args.bars, args.assets)
    weights = {s: 1.0 / (len(syms) - 2) for s in syms[2:]}
    print(
        f"overlay backtest, {args.bars} bars of 8h x {len(weights)} core assets, hedges BTC+ETH, 1 estimator"
    )
    print(f"{'rebalance':<10}{'rebalances':>12}{'seconds':>10}{'bars/s':>12}{'ms/rebalance':>14}")
    for every in ("8h", "1d", "1w"):
        cfg = BacktestConfig(benchmarks=("BTCUSDT",), rebalance=every)
        t0 = time.perf_counter()
        res = run_backtest(
            rets, bench, fund, weights, {"e": fc}, pd.Timedelta("8h"), cfg, ["BTCUSDT", "ETHUSDT"]
        )
        dt = time.perf_counter() - t0
        n_reb = int(res.paths["e"].frame["rebalanced"].sum())
        bars = 2 * len(res.paths["e"].frame)  # the unhedged path runs too
        print(f"{every:<10}{n_reb:>12}{dt:>10.3f}{bars / dt:>12,.0f}{1e3 * dt / max(n_reb, 1):>14.3f}")

    from adaptive_beta.models.portfolio.scenarios import default_scenarios_path, load_scenarios
    from adaptive_beta.models.portfolio.stress import run_scenarios

    scs = [s for s in load_scenarios(default_scenarios_path()) if s.kind != "historical"]
    scs = [s for s in scs if all(k in ("BTCUSDT", "CRYPTO_EW") for k in s.shocks)]
    betas = {s: {"BTCUSDT": 1.2, "CRYPTO_EW": 1.0} for s in syms}
    betas["BTCUSDT"] = {"BTCUSDT": 1.0, "CRYPTO_EW": 0.9}
    pos = {s: 1e5 for s in syms[2:]}
    run_scenarios(pos, betas, None, scs, hedge_instruments=["BTCUSDT", "ETHUSDT"])
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        run_scenarios(pos, betas, None, scs, hedge_instruments=["BTCUSDT", "ETHUSDT"])
    dt = (time.perf_counter() - t0) / n
    print(f"\nrun_scenarios: {len(scs)} shock scenarios x {len(pos)} positions: {1e3 * dt:.2f} ms per call")


if __name__ == "__main__":
    main()
