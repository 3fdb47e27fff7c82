"""`abeta train` end to end: data -> features/targets -> walk-forward (model refit per fold,
scored beside every baseline on the same test periods) -> final fit -> ONNX bundle -> MLflow
run -> registry (`challenger`) -> promotion gate.

The walk-forward is the honest part: for fold k the network sees only windows that end in the
training period, early-stops on the validation block (separated by an embargo >= H), and is
scored on the test block only.  The final model, fitted on all data, is what gets exported;
its scorecard is the walk-forward one.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from adaptive_beta.models.data.schema import Panel
from adaptive_beta.training.train_config import TrainConfig

MODEL_KIND = "model"


def say(msg: str, progress: bool = True) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)


@dataclass
class Prepared:
    """Everything computed once from the panel and shared by all folds."""

    panel: Panel
    features: object  # FeatureTable
    targets: pd.DataFrame
    regimes: pd.DataFrame
    regimes_observable: pd.DataFrame  # rule-based labels (what a trader can compute at t)
    truth: pd.DataFrame | None
    moments: object
    baselines: dict
    benchmarks: list[str]
    data_path: str


@dataclass
class TrainResult:
    run_id: str | None
    scorecard: object  # Scorecard
    records: list[dict]
    bundle_dir: Path
    version: str | None = None
    promotion: object | None = None
    timings: dict = field(default_factory=dict)


def default_sim_dir(cfg: TrainConfig) -> Path:
    s = cfg.sim
    return Path("data") / f"sim-{s.preset}-seed{s.seed}-{s.assets}a-{s.days}d-{s.freq}"


def ensure_simulated(cfg: TrainConfig, progress: bool = True) -> Path:
    """Write the built-in simulated market once (deterministic for the seed) and return its folder."""
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation

    out = default_sim_dir(cfg)
    if (out / "assets").is_dir():
        return out
    say(f"simulating the default market into {out} ...", progress)
    s = cfg.sim
    cfg_sim = SimConfig.from_preset(s.preset, seed=s.seed, n_assets=s.assets, days=s.days, freq=s.freq)
    write_simulation(simulate(cfg_sim), out)
    return out


def prepare(cfg: TrainConfig, panel: Panel | None = None) -> Prepared:
    """Load data, compute features, targets, truth, forward moments and all baseline forecasts."""
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.estimators.baselines import baseline_forecasts
    from adaptive_beta.models.features.compute import compute_features
    from adaptive_beta.models.features.targets import (
        forward_betas,
        forward_moments,
        regime_labels,
        true_forward_betas,
    )

    t0 = time.perf_counter()
    data_path = cfg.data or str(ensure_simulated(cfg, cfg.progress))
    if panel is None:
        say(f"loading {data_path} ...", cfg.progress)
        panel = load_dataset(data_path)
    say(f"panel: {panel.describe()}", cfg.progress)
    features = compute_features(panel, cfg.features)
    targets = forward_betas(panel, cfg.horizon)
    regimes = regime_labels(panel, cfg.regime_horizon)
    regimes_obs = regime_labels(panel, cfg.regime_horizon, source="rule")
    truth = true_forward_betas(panel, cfg.horizon) if "truth_betas" in panel.meta else None
    moments = forward_moments(panel, cfg.horizon)
    baselines = baseline_forecasts(
        panel.returns(), panel.benchmark_returns(), panel.factor_returns(), panel.freq
    )
    say(
        f"features {features.frame.shape[1]} columns x {len(features.frame)} rows, "
        f"{len(baselines)} baselines ({time.perf_counter() - t0:.1f}s)",
        cfg.progress,
    )
    return Prepared(
        panel,
        features,
        targets,
        regimes,
        regimes_obs,
        truth,
        moments,
        baselines,
        panel.benchmark_names,
        data_path,
    )


def predict_range(
    fit, cube: np.ndarray, timestamps: pd.DatetimeIndex, symbols: list[str], lo, hi
) -> pd.DataFrame:
    """Model forecasts for every (t, asset) with t in [lo, hi] that has a full window and base betas.

    Returns a long frame indexed (timestamp, symbol): `<bench>`, `<bench>_lo`, `<bench>_hi`,
    `regime_<name>` columns.
    """
    from adaptive_beta.models.bundle.inference import forecast_windows
    from adaptive_beta.models.features.targets import REGIME_NAMES
    from adaptive_beta.training.fit import predict_torch

    base_idx = [fit.feature_columns.index(fit.base_columns[b]) for b in fit.benchmarks]
    return forecast_windows(
        cube,
        timestamps,
        symbols,
        base_idx,
        fit.lookback_bars,
        fit.stride,
        lambda x: predict_torch(fit.net, x),
        fit.benchmarks,
        keep=np.asarray((timestamps >= lo) & (timestamps <= hi)),
        regimes=REGIME_NAMES,
    )


def _coverage_records(
    preds: pd.DataFrame,
    realised: pd.DataFrame,
    benchmarks,
    split: str,
    name: str,
    samples: dict | None = None,
) -> list[dict]:
    """Coverage and mean width of the model's interval per benchmark.

    samples: benchmark -> index of the scorecard's common sample (`Scorecard.samples`): when
    given, only those rows count, so coverage and width describe the same rows as the MSE.
    """
    out = []
    for b in benchmarks:
        y = realised[b].reindex(preds.index).to_numpy()
        ok = np.isfinite(y) & ~preds.index.get_level_values("symbol").isin([b])
        if samples is not None:
            ok &= preds.index.isin(samples.get(b, preds.index[:0]))
        if ok.sum() == 0:
            continue
        inside = (y[ok] >= preds[f"{b}_lo"].to_numpy()[ok]) & (y[ok] <= preds[f"{b}_hi"].to_numpy()[ok])
        width = (preds[f"{b}_hi"] - preds[f"{b}_lo"]).to_numpy()[ok]
        out.append(_rec(name, MODEL_KIND, b, "coverage90", split, float(inside.mean())))
        out.append(_rec(name, MODEL_KIND, b, "interval_width", split, float(np.mean(width))))
    return [r for r in out if r is not None]


def _rec(est, kind, bench, metric, split, value) -> dict | None:
    """One scorecard record (None for a non-finite value), built by the scorecard's own rule."""
    from adaptive_beta.training.scorecard import _record

    return _record(est, kind, bench, metric, split, value)


def regime_evaluation(
    prep: Prepared, folds, model_preds: dict[int, pd.DataFrame], name: str
) -> tuple[list[dict], dict]:
    """Model regime head vs persistence and a filtered Gaussian HMM, fitted per training fold.

    Targets are the forward labels (the simulator's true regimes where known).  Persistence
    holds *today's observable* regime (the rule-based label of the trailing window, which a
    trader can compute at t); on the simulator the true current regime is hidden state, and a
    baseline that reads it would be an oracle rather than a baseline.
    """
    from adaptive_beta.models.data.schema import COMPOSITE_NAME
    from adaptive_beta.models.features.targets import REGIME_NAMES
    from adaptive_beta.training.regime_baselines import HMMRegimeBaseline, persistence_probs, regime_scores

    reg = prep.regimes
    ts = prep.panel.index
    comp = prep.panel.benchmark_returns()[COMPOSITE_NAME].to_numpy()
    cur = prep.regimes_observable["current"].reindex(ts).to_numpy(dtype=float, na_value=np.nan)
    fwd = reg["forward"].reindex(ts).to_numpy(dtype=float, na_value=np.nan)
    cur = np.where(np.isfinite(cur), cur, -1).astype(int)
    fwd = np.where(np.isfinite(fwd), fwd, -1).astype(int)
    rcols = [f"regime_{r}" for r in REGIME_NAMES]
    pooled: dict[str, list] = {"model": [], "persistence": [], "hmm": [], "label": []}
    records: list[dict] = []
    for fold in folds:
        preds = model_preds.get(fold.k)
        if preds is None or preds.empty:
            continue
        tr = np.asarray((ts >= fold.train_start) & (ts <= fold.train_end))
        te = np.asarray((ts >= fold.test_start) & (ts <= fold.test_end)) & (fwd >= 0) & (cur >= 0)
        p_model = preds[rcols].groupby(level="timestamp").mean().reindex(ts[te])
        keep = p_model.notna().all(axis=1).to_numpy()
        idx = np.nonzero(te)[0][keep]
        if len(idx) == 0:
            continue
        pm = p_model.to_numpy()[keep]
        pp = persistence_probs(cur[tr], fwd[tr], cur[idx], len(REGIME_NAMES))
        hmm = HMMRegimeBaseline(seed=0).fit(np.nan_to_num(comp[tr]), fwd[tr])
        ph = hmm.predict_proba(np.nan_to_num(comp[: idx[-1] + 1]))[idx]
        labels = fwd[idx]
        for est, p, kind in (
            (f"{name}_regime", pm, MODEL_KIND),
            ("regime_persistence", pp, "baseline"),
            ("regime_hmm", ph, "baseline"),
        ):
            for metric, v in regime_scores(p, labels).items():
                records.append(_rec(est, kind, "regime", metric, fold.name, v))
        pooled["model"].append(pm)
        pooled["persistence"].append(pp)
        pooled["hmm"].append(ph)
        pooled["label"].append(labels)
    extra = {}
    if pooled["label"]:
        labels = np.concatenate(pooled["label"])
        for est, key, kind in (
            (f"{name}_regime", "model", MODEL_KIND),
            ("regime_persistence", "persistence", "baseline"),
            ("regime_hmm", "hmm", "baseline"),
        ):
            p = np.concatenate(pooled[key])
            for metric, v in regime_scores(p, labels).items():
                records.append(_rec(est, kind, "regime", metric, "pooled", v))
        extra = {"labels": labels, "model_pred": np.concatenate(pooled["model"]).argmax(axis=1)}
    return [r for r in records if r is not None], extra


def eval_key(prep: Prepared, cfg: TrainConfig) -> str:
    """Identity of the held-out scorecard: same data, folds, horizon and targets => comparable."""
    payload = json.dumps(
        {
            "data": prep.panel.fingerprint(),
            "walk_forward": cfg.walk_forward.model_dump(),
            "horizon": cfg.horizon,
            "regime_horizon": cfg.regime_horizon,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def model_name_of(cfg: TrainConfig) -> str:
    return f"adaptive_beta_{cfg.model.arch}"


def fit_fold(prep: Prepared, model, fold, progress: bool, callbacks: tuple = (), trainer=None, members=None):
    """The network fitted on one fold: trained on its training block, early-stopped and
    calibrated on its validation block (the test block is never seen).  The one fold fit of
    the walk-forward and of `abeta tune`; `trainer` is the config's TrainerConfig (no checkpoint:
    folds are evaluations, only the final fit's best epoch is kept); `members`: the fold's
    ensemble members already fitted as Ray tasks (None: fitted here)."""
    from adaptive_beta.training.fit import fit_model

    return fit_model(
        prep.features,
        prep.targets,
        prep.regimes,
        (fold.train_start, fold.train_end),
        (fold.val_start, fold.val_end),
        model,
        prep.benchmarks,
        progress=progress,
        freq=prep.panel.freq,
        timestamps=prep.panel.index,
        callbacks=callbacks,
        trainer=trainer,
        members=members,
    )


def walk_forward(prep: Prepared, cfg: TrainConfig, ray_address: str | None = None, timings=None):
    """Refit the network per fold; return (folds, model test predictions per fold, per-fold fits info).

    ray_address: None fits every fold and member here, one after the other; an address (`auto`,
    `local`, `HOST:PORT`) fits each fold x member as a Ray task there (`cluster_fit`) and gives the
    same numbers.  timings: a `cluster_fit.ClusterTimings` to fill (the benchmark's overheads).
    """
    from adaptive_beta.models.features.windows import feature_cube
    from adaptive_beta.training.splits import make_folds

    folds = make_folds(prep.panel.index, cfg.walk_forward)
    columns = list(prep.features.frame.columns)
    cube, ts, symbols = feature_cube(prep.features.frame, columns, prep.panel.index, prep.panel.symbols)
    fitted = _members_on_ray(prep, cfg, folds, ray_address, timings) if ray_address else {}
    preds: dict[int, pd.DataFrame] = {}
    infos = []
    for fold in folds:
        t0 = time.perf_counter()
        say(
            f"fold {fold.k + 1}/{len(folds)}: train {fold.train_start:%Y-%m-%d}..{fold.train_end:%Y-%m-%d}, "
            f"val {fold.val_start:%Y-%m-%d}..{fold.val_end:%Y-%m-%d}, "
            f"test {fold.test_start:%Y-%m-%d}..{fold.test_end:%Y-%m-%d}",
            cfg.progress,
        )
        fit = fit_fold(prep, cfg.model, fold, cfg.progress, trainer=cfg.trainer, members=fitted.get(fold.k))
        preds[fold.k] = predict_range(fit, cube, ts, symbols, fold.test_start, fold.test_end)
        infos.append(
            {
                "fold": fold.k,
                "train": [f"{fold.train_start:%Y-%m-%d}", f"{fold.train_end:%Y-%m-%d}"],
                "val": [f"{fold.val_start:%Y-%m-%d}", f"{fold.val_end:%Y-%m-%d}"],
                "test": [f"{fold.test_start:%Y-%m-%d}", f"{fold.test_end:%Y-%m-%d}"],
                "best_epoch": fit.best_epoch,
                "seconds": time.perf_counter() - t0,
                **fit.metrics,
                "history": fit.history,
            }
        )
    return folds, preds, infos


def _members_on_ray(prep: Prepared, cfg: TrainConfig, folds, address: str, timings=None) -> dict:
    """Every fold's ensemble members fitted as Ray tasks on the cluster at `address`."""
    from adaptive_beta.training.cluster import ray_session
    from adaptive_beta.training.cluster_fit import ClusterTimings, fit_members_on_ray

    timings = timings if timings is not None else ClusterTimings()
    t0 = time.perf_counter()
    with ray_session(address) as ray:
        timings.connect_s = time.perf_counter() - t0
        cpus = int(ray.cluster_resources().get("CPU", 0))
        say(
            f"Ray at {address}: {len(folds)} folds x {cfg.model.n_members} members as tasks on {cpus} CPUs",
            cfg.progress,
        )
        return fit_members_on_ray(prep, cfg.model, folds, cfg.trainer, timings)


def final_ranges(prep: Prepared, cfg: TrainConfig):
    """Train on everything up to the last validation block (embargoed), early-stop on that block."""
    wf = cfg.walk_forward
    finite = prep.targets.notna().any(axis=1)
    last = finite[finite].index.get_level_values("timestamp").max()
    from adaptive_beta.models.durations import parse_duration

    val_td = parse_duration(wf.val)
    emb = parse_duration(wf.embargo or cfg.horizon)
    val_start = last - val_td
    train_end = val_start - emb - prep.panel.freq
    return (None, train_end), (val_start, last)
