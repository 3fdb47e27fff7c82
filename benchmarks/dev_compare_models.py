"""Development-data comparison of three model families on the same inputs (issue 10 item 3):
the GRU, the last-step MLP and a gradient-boosted tree, each correcting the Welch beta.

DEVELOPMENT data only: a simulator seed other than the reported one (11 by default), or a
real dataset truncated before the reported test blocks (--end).  The same walk-forward folds
for all three; each is scored with every classical estimator on one common sample (the
scorecard's), and the table gives MSE / best classical per benchmark.

    python benchmarks/dev_compare_models.py --max-folds 3
    python benchmarks/dev_compare_models.py --data docs/datasets/yahoo-crypto-daily.toml --end 2021-03-31
    python benchmarks/dev_compare_models.py --features '{"long_beta_windows": ["7d", "365d"], "vol_ratio": true}'

The tree (sklearn HistGradientBoostingRegressor) sees what the nets see at the window's last
step (the raw features, NaN kept: the tree routes missing values itself) and predicts
target - base on the fold's training windows (the nets' subsample, unweighted: sklearn 1.9 bins
weighted samples with one weighted percentile per bin edge, ~15 s a fit here); its number of
boosting rounds is the one with the lowest MSE on the fold's validation block (early stopping
on validation, as the nets), and its correction is shrunk on that block by the nets' rule
(`training.fit.correction_scale`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pandas as pd
from dev_model_study import add_dev_args, compare_on, dev_config, dev_panel

GBT_DEFAULTS = {
    "max_iter": 300,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 200,
    "l2_regularization": 1.0,
}
NETS = {"gru": {"arch": "gru"}, "mlp": {"arch": "mlp"}}


def _staged_best(model, x_val: np.ndarray, d_val: np.ndarray) -> tuple[int, np.ndarray]:
    """(rounds, validation predictions) at the boosting round with the lowest validation MSE."""
    best, best_pred, best_mse = 0, np.zeros(len(x_val)), float(np.mean(d_val**2))
    for i, p in enumerate(model.staged_predict(x_val), start=1):
        mse = float(np.mean((p - d_val) ** 2))
        if mse < best_mse:
            best, best_pred, best_mse = i, p, mse
    return best, best_pred


def _predict_at(model, rounds: int, x: np.ndarray) -> np.ndarray:
    if rounds == 0:  # no round beat "no correction" on validation: the base beta unchanged
        return np.zeros(len(x))
    for i, p in enumerate(model.staged_predict(x), start=1):
        if i == rounds:
            return p
    raise AssertionError("unreachable: rounds <= fitted iterations")


def tree_data(prep, cfg):
    """The nets' dense arrays and window ends (`training.fit`'s own steps), built once for every fold."""
    from adaptive_beta.training.fit import _base_columns, _build_cubes

    base_cols = _base_columns(prep.features, prep.benchmarks)
    return _build_cubes(
        prep.features,
        prep.targets,
        None,
        prep.benchmarks,
        base_cols,
        cfg.model,
        prep.panel.freq,
        prep.panel.index,
    )


def gbt_fold(prep, cfg, data, fold, params: dict) -> tuple[pd.DataFrame, dict]:
    """One fold of the tree: fit per benchmark on the training windows' last steps, pick the
    rounds and the shrinkage on validation, predict the test block's windows."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from adaptive_beta.training.fit import _range_mask, _window_pairs, correction_scale

    m = cfg.model
    train, val = _window_pairs(data, (fold.train_start, fold.train_end), (fold.val_start, fold.val_end), m)
    test = data.pairs[_range_mask(data.ts, (fold.test_start, fold.test_end))[data.pairs[:, 0]]]
    out = pd.DataFrame(
        index=pd.MultiIndex.from_arrays(
            [data.ts[test[:, 0]], pd.Index(data.symbols)[test[:, 1]]], names=["timestamp", "symbol"]
        )
    )
    info = {}
    for k, b in enumerate(prep.benchmarks):
        j = data.base_index[k]

        def rows(pairs, k=k, j=j):
            x = data.cube[pairs[:, 0], pairs[:, 1]].astype(np.float64)
            return x, data.y[pairs[:, 0], pairs[:, 1], k] - x[:, j]

        (xt, dt), (xv, dv), (xs, _) = rows(train), rows(val), rows(test)
        ok_t, ok_v = np.isfinite(dt), np.isfinite(dv)
        # a column without two distinct training values (all NaN: no funding on spot data) cannot
        # be binned by sklearn; it carries no information for the tree, so it is left out
        use = np.array([np.unique(c[np.isfinite(c)]).size >= 2 for c in xt[ok_t].T])
        base_s = xs[:, j]
        xt, xv, xs = xt[:, use], xv[:, use], xs[:, use]
        model = HistGradientBoostingRegressor(early_stopping=False, random_state=m.seed, **params)
        model.fit(xt[ok_t], dt[ok_t])
        rounds, pv = _staged_best(model, xv[ok_v], dv[ok_v])
        alpha = correction_scale(dv[ok_v, None], np.zeros((ok_v.sum(), 1)), pv[:, None])[0]
        out[b] = base_s + alpha * _predict_at(model, rounds, xs)
        info[b] = (rounds, round(float(alpha), 2))
    return out, info


def _fold_frame(preds: dict[int, pd.DataFrame], benchmarks) -> pd.DataFrame:
    return pd.concat([p[benchmarks] for p in preds.values() if not p.empty]).sort_index()


def run_models(prep, args, gbt_params: dict) -> tuple[list, dict[str, pd.DataFrame], dict]:
    """Walk-forward of every family on the same folds: name -> long test forecasts, plus per-fold notes."""
    from adaptive_beta.training.pipeline import walk_forward

    forecasts, notes, folds = {}, {}, []
    for name, arch in NETS.items():
        cfg = dev_config(args, json.loads(args.set) | arch)
        t0 = time.perf_counter()
        folds, preds, infos = walk_forward(prep, cfg)
        forecasts[name] = _fold_frame(preds, prep.benchmarks)
        notes[name] = {
            "seconds": time.perf_counter() - t0,
            "best_epoch": [i["best_epoch"] for i in infos],
            "alpha": [[round(i[f"corr_scale_{b}"], 2) for b in prep.benchmarks] for i in infos],
        }
    cfg = dev_config(args, json.loads(args.set))
    t0 = time.perf_counter()
    data = tree_data(prep, cfg)
    parts = [gbt_fold(prep, cfg, data, fold, gbt_params) for fold in folds]
    forecasts["gbt"] = _fold_frame(dict(enumerate(p for p, _ in parts)), prep.benchmarks)
    notes["gbt"] = {"seconds": time.perf_counter() - t0, "rounds, alpha": [i for _, i in parts]}
    return folds, forecasts, notes


def print_table(prep, cfg, folds, forecasts: dict[str, pd.DataFrame]) -> None:
    """One scorecard over classical estimators and the three families: their common sample."""
    from adaptive_beta.training.scorecard import score_forecasts
    from adaptive_beta.training.train_run import to_bars

    kinds = {k: "baseline" for k in prep.baselines} | {k: "model" for k in forecasts}
    card = score_forecasts(
        dict(prep.baselines) | forecasts,
        kinds,
        prep.targets,
        prep.moments,
        folds,
        prep.truth,
        horizon_bars=to_bars(cfg.horizon, prep),
        block_bars=to_bars("60d", prep),
        n_boot=50,
        progress=False,
    )
    truth = prep.truth is not None
    head = f"{'benchmark':<10} {'model':<5} {'n':>6} {'mse':>8} {'best classical':>22} {'ratio [90% CI]':>22}"
    head += f" {'corr(m-w60,y-w60)':>18}" + (f" {'rmse_true':>9} {'vs best':>7}" if truth else "")
    print(head)
    for b in prep.benchmarks:
        rows = card.samples.get(b)
        if rows is None or len(rows) == 0:
            continue
        best = card.best(b, "rmse", kind="baseline")
        for name, f in forecasts.items():
            c = compare_on(prep, b, rows, f[b].reindex(rows).to_numpy(), best)
            line = (
                f"{b:<10} {name:<5} {len(rows):>6} {c['mse']:>8.5f} {best:>13} {c['best_mse']:.5f}"
                f" {c['ratio']:>7.3f} [{c['lo']:.3f}, {c['hi']:.3f}] {c['corr']:>+18.3f}"
            )
            if truth:
                line += f" {c['rmse_true']:>9.4f} {c['rmse_true'] / c['best_rmse_true']:>7.3f}"
            print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dev_args(ap)
    ap.add_argument("--set", default="{}", help="JSON overrides of ModelConfig (both nets; arch is set here)")
    ap.add_argument("--gbt", default="{}", help="JSON overrides of the tree's parameters")
    args = ap.parse_args()
    # One OpenMP thread, set before sklearn or torch start their runtimes: on a shared 2-core
    # machine the tree's default thread pool spun 15x slower than one thread (threadpoolctl
    # limits came too late to help).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from adaptive_beta.training.pipeline import prepare

    t0 = time.perf_counter()
    gbt_params = GBT_DEFAULTS | json.loads(args.gbt)
    cfg = dev_config(args, json.loads(args.set))
    prep = prepare(cfg, dev_panel(args, cfg))
    folds, forecasts, notes = run_models(prep, args, gbt_params)
    print(
        f"data: {args.data or f'simulator seed {args.sim_seed}'} end {args.end}; {len(folds)} folds, "
        f"test {folds[0].test_start:%Y-%m-%d}..{folds[-1].test_end:%Y-%m-%d}; "
        f"{prep.features.frame.shape[1]} inputs"
    )
    print(f"features: {args.features}; wf: {args.wf}")
    m = cfg.model
    print(
        f"nets: --set {args.set}: hidden {m.hidden}, layers {m.layers}, lookback {m.lookback}, "
        f"max_steps {m.max_steps}, loss {m.loss}, epochs {m.epochs}, patience {m.patience}, lr {m.lr}, "
        f"dropout {m.dropout}, members {m.n_members}, mlp_window_mean {m.mlp_window_mean}"
    )
    print(f"gbt: {gbt_params} (rounds chosen on validation)")
    for name, note in notes.items():
        print(f"  {name}: " + ", ".join(f"{k} {v if k != 'seconds' else round(v)}" for k, v in note.items()))
    print_table(prep, cfg, folds, forecasts)
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
