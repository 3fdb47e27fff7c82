"""Development-data walk-forward of the network (no export, no MLflow): model vs best classical.

Only for choosing a configuration on DEVELOPMENT data: a simulator seed other than the
reported one, or a real dataset truncated before the reported test blocks (--end).

    python benchmarks/dev_model_study.py --sim-seed 11 --set '{"loss": "mse"}' [--max-folds 3]
    python benchmarks/dev_model_study.py --data docs/datasets/yahoo-crypto-daily.toml --end 2021-03-31

The data options, the development panel and the per-benchmark comparison are functions that
`dev_compare_models.py` reuses, so both studies run on the same data and score the same way.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

BASE_ESTIMATOR = "welch_hl60d"  # the classical beta the network corrects (FeatureSpec.welch_halflife)


def add_dev_args(ap: argparse.ArgumentParser) -> None:
    """The data, walk-forward and feature options every development study takes."""
    ap.add_argument("--data", default=None)
    ap.add_argument("--sim-seed", type=int, default=11)
    ap.add_argument("--end", default=None, help="truncate the panel (dev data): last timestamp kept")
    ap.add_argument("--wf", default="{}", help="JSON overrides of WalkForwardConfig")
    ap.add_argument("--features", default="{}", help="JSON overrides of FeatureSpec")
    ap.add_argument("--max-folds", type=int, default=None)


def dev_config(args, model: dict):
    """The TrainConfig of a development run (one torch thread, no progress bars)."""
    from adaptive_beta.models.features.spec import FeatureSpec
    from adaptive_beta.training.model_config import ModelConfig
    from adaptive_beta.training.splits import WalkForwardConfig
    from adaptive_beta.training.train_config import SimDefaults, TrainConfig

    wf = WalkForwardConfig(**({"max_folds": args.max_folds} | json.loads(args.wf)))
    return TrainConfig(
        data=args.data,
        sim=SimDefaults(seed=args.sim_seed),
        model=ModelConfig(**({"num_threads": 1} | model)),
        walk_forward=wf,
        features=FeatureSpec(**json.loads(args.features)),
        progress=False,
        n_boot=200,
    )


def dev_panel(args, cfg):
    """The development panel: the simulator of `--sim-seed`, or `--data` cut at `--end`."""
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.training.pipeline import ensure_simulated

    if not args.data:
        return load_dataset(str(ensure_simulated(cfg, False)))
    panel = load_dataset(args.data)
    return panel.slice(None, pd.Timestamp(args.end, tz="UTC")) if args.end else panel


def baseline_on(prep, estimator: str, bench: str, rows: pd.Index) -> np.ndarray:
    """A classical estimator's forecasts on the scored rows."""
    f = prep.baselines[estimator][bench].stack()
    f.index = f.index.set_names(["timestamp", "symbol"])
    return f.reindex(rows).to_numpy()


def compare_on(prep, bench: str, rows: pd.Index, model: np.ndarray, best: str) -> dict:
    """Model vs the best classical estimator on `rows`: MSEs, their ratio with a 60-day block
    bootstrap interval, and corr(model - Welch60, realised - Welch60) (and vs the truth where
    known): a correction uncorrelated with the base's error adds variance, not signal."""
    from adaptive_beta.training.metrics import block_bootstrap_ratio

    y = prep.targets[bench].reindex(rows).to_numpy()
    bc, base = baseline_on(prep, best, bench, rows), baseline_on(prep, BASE_ESTIMATOR, bench, rows)
    stamps = rows.get_level_values("timestamp")

    def per_time(p):
        return pd.Series((p - y) ** 2).groupby(stamps).sum().to_numpy()

    block = int(pd.Timedelta("60D") / prep.panel.freq)
    ratio, lo, hi = block_bootstrap_ratio(per_time(model), per_time(bc), block=block, n_boot=500)
    d = model - base
    out = {
        "mse": float(np.mean((model - y) ** 2)),
        "best": best,
        "best_mse": float(np.mean((bc - y) ** 2)),
        "ratio": ratio,
        "lo": lo,
        "hi": hi,
        "corr": np.corrcoef(d, y - base)[0, 1] if np.std(d) > 0 else float("nan"),
        "sd": float(np.std(d)),
    }
    if prep.truth is not None:
        t = prep.truth[bench].reindex(rows).to_numpy()
        out["rmse_true"] = float(np.sqrt(np.mean((model - t) ** 2)))
        out["best_rmse_true"] = float(np.sqrt(np.mean((bc - t) ** 2)))
        out["corr_true"] = np.corrcoef(d, t - base)[0, 1] if np.std(d) > 0 else float("nan")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    add_dev_args(ap)
    ap.add_argument("--set", default="{}", help="JSON overrides of ModelConfig")
    args = ap.parse_args()

    from adaptive_beta.training.pipeline import prepare, walk_forward
    from adaptive_beta.training.train_run import score_all

    t0 = time.perf_counter()
    cfg = dev_config(args, json.loads(args.set))
    prep = prepare(cfg, dev_panel(args, cfg))
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
        c = compare_on(
            prep, b, rows, model_long[b].reindex(rows).to_numpy(), card.best(b, "rmse", kind="baseline")
        )
        line = (
            f"  {b}: model mse {c['mse']:.5f} / best classical {c['best']} {c['best_mse']:.5f}"
            f" = {c['ratio']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}]  corr(m-w60, y-w60) {c['corr']:+.3f}"
            f"  sd(m-w60) {c['sd']:.4f}  cov90 {card.value(name, b, 'coverage90')}"
        )
        if "rmse_true" in c:
            line += (
                f"  rmse_true {c['rmse_true']:.4f} vs {c['best']} {c['best_rmse_true']:.4f}"
                f" corr_true {c['corr_true']:+.3f}"
            )
        print(line)


if __name__ == "__main__":
    main()
