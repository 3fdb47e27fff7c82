"""How close to the simulator's true forward beta can ANY causal estimator get? (issue 10 evidence)

The issue-10 goal on the simulator is RMSE vs the true 30-day forward beta <= 0.90 x the best
classical estimator.  A causal estimator sees at most the market's state at bar t; the oracles
below see MORE than that (the true, noise-free beta of every past bar, and an affine map fitted on
the very rows it is scored on), so no causal model can beat the best of them in expectation:

- `oracle_now`: the true beta of bar t (the simulator's instantaneous loading), no estimation noise.
- `oracle_past30`: the variance-weighted true beta over the last 30 days (what a perfect 30-day
  estimator would measure).
- `oracle_affine`: an in-sample least-squares affine map of [true beta now, true past-30d beta,
  true past-365d mean, Welch 60d, Welch 120d] onto the target, fitted per benchmark on the scored
  rows themselves (optimistic by construction).
- `oracle_affine_rich`: the same plus the true past 7d and 90d betas, the TRUE regime of bar t
  (one-hot) and its interaction with the true beta now.

Rows: every (timestamp, asset) after the first 365 days with all inputs and the target finite,
BTC-vs-BTC pairs dropped (as the scorecard does).  Simulator seeds other than the reported one are
development data; the reported seed 7 is printed too, only as a bound (nothing is tuned on it).

    python benchmarks/dev_oracle_bound.py --seeds 11 7 [--preset calibrated|legacy]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pandas as pd


def _past_weighted(beta: np.ndarray, var: np.ndarray, h: int) -> np.ndarray:
    """Variance-weighted mean of beta over rows t-h+1..t (causal)."""
    m = np.isfinite(beta) & np.isfinite(var)
    num = pd.DataFrame(np.where(m, beta * var, 0.0)).rolling(h, min_periods=h).sum().to_numpy()
    den = pd.DataFrame(np.where(m, np.broadcast_to(var, beta.shape), 0.0)).rolling(h, min_periods=h).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den.to_numpy()


def study(seed: int, preset: str) -> list[dict]:
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.estimators.baselines import baseline_forecasts
    from adaptive_beta.models.features.targets import true_forward_betas
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation

    cfg = SimConfig.from_preset(preset, seed=seed)
    with tempfile.TemporaryDirectory() as d:
        write_simulation(simulate(cfg), d)
        panel = load_dataset(d)
    ts, syms = panel.index, panel.symbols
    bars_day = int(round(pd.Timedelta("1D") / panel.freq))
    base = baseline_forecasts(panel.returns(), panel.benchmark_returns(), panel.factor_returns(), panel.freq)
    truth = true_forward_betas(panel, "30d")
    tb, tm = panel.meta["truth_betas"], panel.meta["truth_market"]
    rows = []
    for bench in panel.benchmark_names:
        y = truth[bench].unstack("symbol").reindex(index=ts, columns=syms).to_numpy()
        now = tb[f"beta_{bench}"].unstack("symbol").reindex(index=ts, columns=syms).to_numpy(dtype=float)
        var = tm[f"var_{bench}"].reindex(ts).to_numpy(dtype=float)[:, None]
        past30 = _past_weighted(now, var, 30 * bars_day)
        past365 = _past_weighted(now, var, 365 * bars_day)
        past7 = _past_weighted(now, var, 7 * bars_day)
        past90 = _past_weighted(now, var, 90 * bars_day)
        regime = panel.meta["truth_market"]["regime"].reindex(ts).to_numpy()
        onehot = [
            np.broadcast_to((regime == k)[:, None], now.shape).astype(float) for k in np.unique(regime)[1:]
        ]
        est = {n: base[n][bench].reindex(index=ts, columns=syms).to_numpy() for n in sorted(base)}
        keep = (np.array(syms) != bench)[None, :] & (np.arange(len(ts)) >= 365 * bars_day)[:, None]
        cols = [now, past30, past365, est["welch_hl60d"], est["welch_hl120d"]]
        ok = keep & np.isfinite(y) & np.all([np.isfinite(c) for c in cols + list(est.values())], axis=0)
        rmse = {n: float(np.sqrt(np.mean((v[ok] - y[ok]) ** 2))) for n, v in est.items()}
        best = min(rmse, key=rmse.get)
        rich = cols + [past7, past90] + onehot + [o * now for o in onehot]
        x = np.column_stack([np.ones(ok.sum())] + [c[ok] for c in cols])
        xr = np.column_stack([np.ones(ok.sum())] + [c[ok] for c in rich])
        coef_r, *_ = np.linalg.lstsq(xr, y[ok], rcond=None)
        coef, *_ = np.linalg.lstsq(x, y[ok], rcond=None)
        oracles = {
            "oracle_now": now[ok],
            "oracle_past30": past30[ok],
            "oracle_affine": x @ coef,
            "oracle_affine_rich": xr @ coef_r,
        }
        row = {
            "seed": seed,
            "preset": preset,
            "benchmark": bench,
            "rows": int(ok.sum()),
            "best_classical": best,
        }
        row["best_rmse"] = rmse[best]
        for n, p in oracles.items():
            row[n] = float(np.sqrt(np.mean((p - y[ok]) ** 2))) / rmse[best]
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 7])
    ap.add_argument("--preset", default="calibrated", choices=["calibrated", "legacy"])
    args = ap.parse_args()
    out = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        out += study(seed, args.preset)
        print(f"seed {seed} ({args.preset}) done in {time.perf_counter() - t0:.0f} s", flush=True)
    table = pd.DataFrame(out)
    print(
        "\nRMSE vs the true 30-day forward beta, as a ratio to the best classical estimator on the same rows"
    )
    print(
        "(the issue-10 goal is <= 0.90; an oracle ratio above 0.90 means no causal estimator can reach it)\n"
    )
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
