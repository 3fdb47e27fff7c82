"""Development-data study: learned (ridge / convex) base of classical estimators + long memory.

Plain numpy, no network.  Per walk-forward fold, fit on TRAINING targets only (the fold's
train block, which ends an embargo before validation), score on the fold's validation+test
blocks of a DEVELOPMENT panel (the caller truncates real data before the reported test period).

    python benchmarks/dev_base_study.py --data DIR_OR_MANIFEST [--end 2021-04-30] [--sim-seed 11]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy.optimize import nnls


def expanding_beta(r: np.ndarray, x: np.ndarray, min_bars: int) -> np.ndarray:
    """Causal expanding-window OLS beta of each column of r on x (T x N)."""
    m = np.isfinite(r) & np.isfinite(x)[:, None]
    xv = np.where(m, x[:, None], 0.0)
    rv = np.where(m, r, 0.0)
    n = np.cumsum(m, 0)
    sx, sy = np.cumsum(xv, 0), np.cumsum(rv, 0)
    sxx, sxy = np.cumsum(xv * xv, 0), np.cumsum(xv * rv, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = sxx / n - (sx / n) ** 2
        cov = sxy / n - sx * sy / n**2
        b = cov / var
    return np.where(n >= min_bars, b, np.nan)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--sim-seed", type=int, default=11)
    ap.add_argument("--end", default=None, help="truncate the panel (dev data): last timestamp kept")
    ap.add_argument("--lam", type=float, default=1.0)
    ap.add_argument("--test", default="180d")
    ap.add_argument("--train-min", default="365d")
    args = ap.parse_args()

    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.estimators.baselines import baseline_forecasts
    from adaptive_beta.models.features.targets import forward_betas_wide
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.training.metrics import block_bootstrap_ratio
    from adaptive_beta.training.splits import WalkForwardConfig, make_folds

    t0 = time.perf_counter()
    if args.data:
        panel = load_dataset(args.data)
    else:
        import tempfile

        from adaptive_beta.models.sim.write import write_simulation

        d = tempfile.mkdtemp()
        write_simulation(simulate(SimConfig(seed=args.sim_seed)), d)
        panel = load_dataset(d)
    if args.end:
        panel = panel.slice(None, pd.Timestamp(args.end, tz="UTC"))
    freq = panel.freq
    bars_day = pd.Timedelta("1D") / freq
    rets = panel.returns()
    br = panel.benchmark_returns()
    base = baseline_forecasts(rets, br, panel.factor_returns(), freq)
    tgt = forward_betas_wide(panel, "30d")
    truth = None
    if "truth_betas" in panel.meta:
        from adaptive_beta.models.features.targets import true_forward_betas

        truth = true_forward_betas(panel, "30d")
    folds = make_folds(panel.index, WalkForwardConfig(test=args.test, val="90d", train_min=args.train_min))
    print(f"panel {panel.describe()}  folds {len(folds)}  ({time.perf_counter() - t0:.1f}s)")
    ts = panel.index
    for bench in panel.benchmark_names:
        names = sorted(base)
        x_cols = {n: base[n][bench].reindex(index=ts, columns=panel.symbols).to_numpy() for n in names}
        r = rets.to_numpy(dtype=float)
        xb = br[bench].to_numpy(dtype=float)
        x_cols["expanding"] = expanding_beta(r, xb, int(90 * bars_day))
        y = tgt[bench].reindex(index=ts, columns=panel.symbols).to_numpy()
        tr = None
        if truth is not None:
            tr = truth[bench].unstack("symbol").reindex(index=ts, columns=panel.symbols).to_numpy()
        sym = np.array(panel.symbols)
        notself = (sym != bench)[None, :].repeat(len(ts), 0)
        classical = names
        variants = {
            "ridge_all": classical,
            "ridge_all+exp": classical + ["expanding"],
            "ridge_all+exp+assetmean": classical + ["expanding", "ASSETMEAN"],
            "ridge_w60_w120_exp": ["welch_hl60d", "welch_hl120d", "expanding"],
            "ridge_w60_w120_ols365_exp": ["welch_hl60d", "welch_hl120d", "rolling_ols_365d", "expanding"],
            "convex_all+exp": classical + ["expanding"],
            "convex_all": classical,
            "convex_small": ["welch_hl60d", "welch_hl120d", "ewma_hl90d", "kalman_rw", "expanding"],
            "resid_ridge_all+exp": classical + ["expanding"],
            "affine_w60": ["welch_hl60d"],
            "affine_w60_w120_exp": ["welch_hl60d", "welch_hl120d", "expanding"],
            "mean_w60_w120_ewma90": ["welch_hl60d", "welch_hl120d", "ewma_hl90d"],
        }
        # scored rows: every classical + expanding finite, target finite, not self
        allx = np.stack([x_cols[n] for n in classical + ["expanding"]], -1)
        ok_all = np.isfinite(allx).all(-1) & np.isfinite(y) & notself
        preds = {v: np.full(y.shape, np.nan) for v in variants}
        score_mask = np.zeros(y.shape, bool)
        for f in folds:
            trm = f.mask(ts, "train")
            scm = f.mask(ts, "test") | (f.mask(ts, "val") if f.val_start is not None else False)
            score_mask |= scm[:, None] & ok_all
            tr_rows = trm[:, None] & ok_all
            amean = {}
            for j, s in enumerate(panel.symbols):
                v = y[tr_rows[:, j], j]
                amean[s] = v.mean() if len(v) else np.nan
            am = np.array([amean[s] for s in panel.symbols])[None, :].repeat(len(ts), 0)
            am = np.where(np.isfinite(am), am, np.nanmean(y[tr_rows]))
            for v, cols in variants.items():
                X = np.stack([am if c == "ASSETMEAN" else x_cols[c] for c in cols], -1)
                Xt, yt = X[tr_rows], y[tr_rows]
                Xs = X[scm[:, None] & ok_all]
                if v.startswith("mean_"):
                    p = Xs.mean(1)
                elif v.startswith("resid_ridge"):
                    # y - w60 on (x_j - w60), no intercept, strong ridge: shrinks toward Welch 60d
                    b0 = x_cols["welch_hl60d"]
                    bt, bs = b0[tr_rows], b0[scm[:, None] & ok_all]
                    D = Xt - bt[:, None]
                    sd = D.std(0) + 1e-9
                    Z = D / sd
                    lam = args.lam * len(yt) * 0.1
                    coef = np.linalg.solve(Z.T @ Z + lam * np.eye(Z.shape[1]), Z.T @ (yt - bt))
                    p = bs + ((Xs - bs[:, None]) / sd) @ coef
                elif v.startswith("affine"):
                    A = np.column_stack([np.ones(len(yt)), Xt])
                    coef = np.linalg.lstsq(A, yt, rcond=None)[0]
                    p = coef[0] + Xs @ coef[1:]
                elif v.startswith("convex"):
                    # min ||y - X w||, w >= 0, sum w = 1 (penalty row enforces the sum)
                    big = 1e3 * np.sqrt(len(yt))
                    A = np.vstack([Xt, big * np.ones((1, Xt.shape[1]))])
                    bvec = np.r_[yt, big]
                    w, _ = nnls(A, bvec)
                    p = Xs @ w
                else:
                    mu, sd = Xt.mean(0), Xt.std(0) + 1e-9
                    Z = (Xt - mu) / sd
                    lam = args.lam * len(yt) * 1e-3
                    coef = np.linalg.solve(Z.T @ Z + lam * np.eye(Z.shape[1]), Z.T @ (yt - yt.mean()))
                    p = yt.mean() + ((Xs - mu) / sd) @ coef
                preds[v][scm[:, None] & ok_all] = p
        sel = score_mask
        yy = y[sel]
        stamp = np.nonzero(sel)[0]
        out = {}
        for n in classical + ["expanding"]:
            out[n] = x_cols[n][sel]
        for v in variants:
            out[v] = preds[v][sel]
        mse = {n: float(np.mean((p - yy) ** 2)) for n, p in out.items()}
        best_cls = min(classical, key=mse.get)
        print(f"\n== {bench}: {sel.sum()} rows, best classical {best_cls} mse {mse[best_cls]:.5f}")

        def per_time(p, yy=yy, stamp=stamp):
            return pd.Series((p - yy) ** 2).groupby(stamp).sum().to_numpy()

        ref = per_time(out[best_cls])
        for n in ["welch_hl60d", "welch_hl120d", "ewma_hl90d", "rolling_ols_365d", "expanding", *variants]:
            ratio, lo, hi = block_bootstrap_ratio(per_time(out[n]), ref, block=int(60 * bars_day), n_boot=500)
            extra = ""
            if tr is not None:
                tt = tr[sel]
                extra = f"  rmse_true {np.sqrt(np.mean((out[n] - tt) ** 2)):.4f} (best cls {np.sqrt(np.mean((out[best_cls] - tt) ** 2)):.4f})"
            d = out[n] - out[best_cls]
            c = np.corrcoef(d, yy - out[best_cls])[0, 1] if np.std(d) > 0 else float("nan")
            print(
                f"  {n:28s} mse {mse[n]:.5f}  /best_cls {ratio:.3f} [{lo:.3f},{hi:.3f}]  corr(d,real-d) {c:+.3f}{extra}"
            )


if __name__ == "__main__":
    main()
