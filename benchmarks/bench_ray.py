"""Training on Ray vs in-process, side by side in one run (issue 14, goal rows 2 and 3).

    python benchmarks/bench_ray.py                 # defaults: ~8-10 min on 2 shared cores
    python benchmarks/bench_ray.py --skip-tune     # the walk-forward comparison alone

Part 1, walk-forward: the same config (6 folds x 5 ensemble members = 30 fits on a small
simulated market) fitted in-process, then on a local Ray cluster of `--workers` CPUs started here
(`ray.init(num_cpus=...)`): wall time of each, the ratio (goal <= 0.7), Ray's overheads (cluster
start, building + `ray.put` of the arrays, per-task overhead = task wall time not spent fitting)
and whether the two scorecards are equal record for record (`score_all` on each walk-forward).

Part 2, tune: `abeta tune --ray-address` with `--trials` trials (Optuna search + ASHA) on the same
cluster, then `abeta train --config BEST.toml` in-process: the pooled validation MSE of its
walk-forward fold runs must equal the best trial's.

Everything goes to a scratch folder (MLflow store, Ray Tune results); nothing in the checkout.
The machine's load average is printed beside the figures: the cores are shared.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--assets", type=int, default=4, help="simulated assets (default 4)")
    p.add_argument("--days", type=int, default=1000, help="simulated days of daily bars (default 1000)")
    p.add_argument("--folds", type=int, default=6, help="walk-forward folds (default 6)")
    p.add_argument("--members", type=int, default=5, help="ensemble members (seeds) per fold (default 5)")
    p.add_argument("--epochs", type=int, default=4, help="max epochs per fit (default 4)")
    p.add_argument("--samples", type=int, default=1500, help="max training windows per fit (default 1500)")
    p.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray cluster (default 2)")
    p.add_argument("--trials", type=int, default=20, help="abeta tune trials on Ray (default 20)")
    p.add_argument("--tune-folds", type=int, default=2, help="folds per tune trial (default 2)")
    p.add_argument("--skip-tune", action="store_true", help="only the walk-forward comparison")
    p.add_argument("--keep", type=Path, default=None, help="scratch folder to keep (default: a temp dir)")
    return p.parse_args()


def _config(a: argparse.Namespace, data: Path, folds: int, members: int):
    from adaptive_beta.training.model_config import ModelConfig
    from adaptive_beta.training.splits import WalkForwardConfig
    from adaptive_beta.training.train_config import TrainConfig

    return TrainConfig(
        data=str(data),
        model=ModelConfig(
            epochs=a.epochs,
            hidden=8,
            max_train_samples=a.samples,
            lookback="32d",
            max_steps=8,
            n_members=members,
        ),
        walk_forward=WalkForwardConfig(train_min="300d", val="60d", test="90d", max_folds=folds),
        n_boot=50,
        attribution_windows=8,
        progress=False,
    )


def _load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def _walk_forward(a: argparse.Namespace, scratch: Path, data: Path) -> dict:
    """In-process, then on a local Ray cluster; the cluster stays up for the tune part."""
    import ray

    from adaptive_beta.training.cluster import ray_temp_dir
    from adaptive_beta.training.cluster_fit import ClusterTimings
    from adaptive_beta.training.pipeline import prepare, walk_forward
    from adaptive_beta.training.train_run import score_all

    cfg = _config(a, data, a.folds, a.members)
    prep = prepare(cfg)
    print(
        f"walk-forward: {a.folds} folds x {a.members} members, epochs<={a.epochs}, "
        f"<= {a.samples} windows per fit, 1 torch thread per fit; {_load()}",
        flush=True,
    )
    t0 = time.perf_counter()
    folds, preds_here, _ = walk_forward(prep, cfg)
    here_s = time.perf_counter() - t0
    print(f"  in-process: {here_s:.1f} s; {_load()}", flush=True)
    t0 = time.perf_counter()
    ray.init(num_cpus=a.workers, include_dashboard=False, log_to_driver=False, _temp_dir=str(ray_temp_dir()))
    start_s = time.perf_counter() - t0
    timings = ClusterTimings()
    t0 = time.perf_counter()
    _, preds_ray, _ = walk_forward(prep, cfg, "local", timings)
    ray_s = time.perf_counter() - t0
    card_here, _, _ = score_all(prep, cfg, folds, preds_here)
    card_ray, _, _ = score_all(prep, cfg, folds, preds_ray)
    fit_s = sum(timings.task_s)
    overhead = (timings.wall_s * a.workers - fit_s) / max(timings.tasks, 1)
    print(f"  on Ray ({a.workers} workers): {ray_s:.1f} s walk-forward (+ {start_s:.1f} s cluster start)")
    print(
        f"  ratio Ray / in-process: {ray_s / here_s:.2f} without the cluster start, "
        f"{(ray_s + start_s) / here_s:.2f} with it (goal <= 0.7)"
    )
    print(
        f"  overheads: arrays built + ray.put once {timings.put_s:.2f} s ({timings.put_mb:.1f} MB); "
        f"{timings.tasks} tasks, {fit_s:.1f} s fitting inside them; per-task overhead "
        f"(worker-seconds not fitting / tasks, includes each worker's first torch import) {overhead:.2f} s"
    )
    same = card_here.records == card_ray.records
    preds_same = all(preds_here[k].equals(preds_ray[k]) for k in preds_here)
    print(
        f"  scorecards equal: {same} ({len(card_here.records)} records); predictions equal: {preds_same}; "
        f"{_load()}",
        flush=True,
    )
    return {"ratio": ray_s / here_s, "same": same and preds_same}


def _cli(*args: str, env: dict) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "adaptive_beta.cli", *args], capture_output=True, text=True, env=env
    )
    if res.returncode != 0:
        raise SystemExit(f"abeta {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return res.stdout


def _tune(a: argparse.Namespace, scratch: Path, data: Path) -> dict:
    """`abeta tune --ray-address` in this process (on the cluster up here), then `abeta train`."""
    import mlflow

    from adaptive_beta.training.cluster_tune import run_tune_ray
    from adaptive_beta.training.tune import TuneConfig, pool

    cfg = _config(a, data, a.tune_folds, 1)
    print(
        f"tune: {a.trials} trials on Ray ({a.workers} workers), {a.tune_folds} folds per trial, "
        f"1 member, epochs<={a.epochs}; Optuna TPE + ASHA; {_load()}",
        flush=True,
    )
    t0 = time.perf_counter()
    settings = TuneConfig(n_trials=a.trials, storage=f"sqlite:///{scratch}/study.db", study_name="bench")
    res = run_tune_ray(cfg, settings, "local", out=scratch / "best.toml", storage_path=scratch / "ray_tune")
    tune_s = time.perf_counter() - t0
    print(
        f"  {tune_s:.0f} s: {res.n_complete} complete, {res.n_pruned} stopped early by ASHA, of {res.n_trials}; "
        f"best pooled validation MSE {res.best_value:.6f}",
        flush=True,
    )
    t0 = time.perf_counter()
    out = _cli("train", "--config", str(res.config_path), "--quiet", env=dict(os.environ))
    run_id = next(line.split()[-1] for line in out.splitlines() if line.startswith("run id:"))
    parent = mlflow.get_run(run_id)
    folds = mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
        output_format="list",
    )
    benchmarks = sorted(
        {
            k.removeprefix("val_rmse_")
            for f in folds
            for k in f.data.metrics
            if k.startswith("val_rmse_") and not k.startswith("val_rmse_base_")
        }
    )
    again = pool([f.data.metrics for f in folds], benchmarks).objective
    print(
        f"  abeta train --config best.toml (in-process, {time.perf_counter() - t0:.0f} s): pooled validation "
        f"MSE {again:.6f}; reproduced: {again == res.best_value} (|diff| {abs(again - res.best_value):.1e}); "
        f"{_load()}",
        flush=True,
    )
    return {"reproduced": again == res.best_value}


def main() -> None:
    a = _args()
    scratch = a.keep or Path(tempfile.mkdtemp(prefix="abeta-bench-ray-"))
    scratch.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch}/mlflow.db"
    os.environ["ABETA_MLRUNS"] = str(scratch / "mlruns")
    os.environ.pop("ABETA_RAY_ADDRESS", None)
    import ray

    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation

    print(f"bench_ray: {vars(a)}; scratch {scratch}; python {sys.version.split()[0]}, ray {ray.__version__}")
    data = write_simulation(simulate(SimConfig(seed=5, n_assets=a.assets, days=a.days)), scratch / "sim")
    print(f"simulated {a.assets} assets x {a.days} daily bars (seed 5) into {data}", flush=True)
    try:
        wf = _walk_forward(a, scratch, data)
        tu = None if a.skip_tune else _tune(a, scratch, data)
    finally:
        ray.shutdown()
    print(
        f"summary: walk-forward ratio {wf['ratio']:.2f} (goal <= 0.7), same scorecard {wf['same']}"
        + ("" if tu is None else f"; tune best config reproduced by abeta train: {tu['reproduced']}")
    )


if __name__ == "__main__":
    main()
