"""Development-data walk-forward of the network (no export, no MLflow): model vs best classical.

Only for choosing a configuration on DEVELOPMENT data: a simulator seed other than the
reported one, or a real dataset truncated before the reported test blocks (--end).

    python benchmarks/dev_model_study.py --sim-seed 11 --set '{"loss": "mse"}' [--max-folds 3]
    python benchmarks/dev_model_study.py --data docs/datasets/yahoo-crypto-daily.toml --end 2021-03-31
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--sim-seed", type=int, default=11)
    ap.add_argument("--end", default=None)
    ap.add_argument("--set", default="{}", help="JSON overrides of ModelConfig")
    ap.add_argument("--wf", default="{}", help="JSON overrides of WalkForwardConfig")
    ap.add_argument("--features", default="{}", help="JSON overrides of FeatureSpec")
    ap.add_argument("--max-folds", type=int, default=None)
    args = ap.parse_args()

    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.features.spec import FeatureSpec
    from adaptive_beta.training.metrics import block_bootstrap_ratio
    from adaptive_beta.training.model_config import ModelConfig
    from adaptive_beta.training.pipeline import prepare, walk_forward
    from adaptive_beta.training.splits import WalkForwardConfig
    from adaptive_beta.training.train_config import SimDefaults, TrainConfig
    from adaptive_beta.training.train_run import score_all

    t0 = time.perf_counter()
    wf = WalkForwardConfig(**({"max_folds": args.max_folds} | json.loads(args.wf)))
    cfg = TrainConfig(
        data=args.data,
        sim=SimDefaults(seed=args.sim_seed),
        model=ModelConfig(**({"num_threads": 1} | json.loads(args.set))),
        walk_forward=wf,
        features=FeatureSpec(**json.loads(args.features)),
        progress=False,
        n_boot=200,
    )
    panel = None
    if args.data:
        panel = load_dataset(args.data)
        if args.end:
            panel = panel.slice(None, pd.Timestamp(args.end, tz="UTC"))
    else:
        from adaptive_beta.training.pipeline import ensure_simulated

        panel = load_dataset(str(ensure_simulated(cfg, False)))
    prep = prepare(cfg, panel)
    folds, preds, infos = walk_forward(prep, cfg)
    card, model_long, _ = score_all(prep, cfg, folds, preds)
    name = f"adaptive_beta_{cfg.model.arch}"
    print(
        f"data {args.data or f'sim seed {args.sim_seed}'} end {args.end} set {args.set} wf {args.wf} "
        f"features {args.features} folds {len(folds)} ({time.perf_counter() - t0:.0f}s)"
    )
    print(
        "alpha per fold:",
        [{k: round(v, 2) for k, v in i.items() if k.startswith("corr_scale")} for i in infos],
    )
    print("best epoch per fold:", [i["best_epoch"] for i in infos])
    for b in prep.benchmarks:
        rows = card.samples.get(b)
        if rows is None or len(rows) == 0:
            continue
        y = prep.targets[b].reindex(rows).to_numpy()
        m = model_long[b].reindex(rows).to_numpy()
        best = card.best(b, "rmse", kind="baseline")

        def fc(est, b=b, rows=rows):
            f = prep.baselines[est][b].stack()
            f.index = f.index.set_names(["timestamp", "symbol"])
            return f.reindex(rows).to_numpy()

        bc, base = fc(best), fc("welch_hl60d")
        stamps = rows.get_level_values("timestamp")

        def pt(p, y=y, stamps=stamps):
            return pd.Series((p - y) ** 2).groupby(stamps).sum().to_numpy()

        r, lo, hi = block_bootstrap_ratio(
            pt(m), pt(bc), block=int(pd.Timedelta("60D") / prep.panel.freq), n_boot=500
        )
        d = m - base
        c = np.corrcoef(d, y - base)[0, 1] if np.std(d) > 0 else float("nan")
        line = (
            f"  {b}: model mse {np.mean((m - y) ** 2):.5f} / best classical {best} {np.mean((bc - y) ** 2):.5f}"
            f" = {r:.3f} [{lo:.3f}, {hi:.3f}]  corr(m-w60, y-w60) {c:+.3f}  sd(m-w60) {np.std(d):.4f}"
            f"  cov90 {card.value(name, b, 'coverage90')}"
        )
        if prep.truth is not None:
            t = prep.truth[b].reindex(rows).to_numpy()
            ct = np.corrcoef(d, t - base)[0, 1] if np.std(d) > 0 else float("nan")
            line += (
                f"  rmse_true {np.sqrt(np.mean((m - t) ** 2)):.4f} vs {best} {np.sqrt(np.mean((bc - t) ** 2)):.4f}"
                f" corr_true {ct:+.3f}"
            )
        print(line)


if __name__ == "__main__":
    main()
