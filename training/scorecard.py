"""The walk-forward scorecard: every estimator x benchmark x split, on a common sample.

Fairness rules (why the numbers are comparable):

* Only test periods are scored: each fold's test block (`fold<k>`) and all of them together
  (`pooled`).  The embargo in `adaptive_beta.training.splits` keeps training targets out of them.
* A (timestamp, symbol) pair is scored for a benchmark only if EVERY estimator has a finite
  forecast there and the realised target is finite: a long-window estimator that is still
  warming up would otherwise be scored on fewer, different rows.  An estimator that covers
  less than `min_coverage` of the rows with a target is left out (with a warning) rather than
  shrinking everyone's sample.
* Pairs where the asset IS the benchmark (BTCUSDT against BTCUSDT: beta 1 by construction)
  are skipped.
* The reference for `dm_pvalue` and `mse_ratio` is, per benchmark, the `rolling_ols_*`
  estimator with the lowest pooled MSE on the common sample.  It is chosen EX POST (with
  hindsight of the test periods), which makes it a deliberately hard reference: beating it
  beats every rolling window one could have picked.  Without rolling OLS estimators the
  best baseline is used.

Forecast formats accepted by `score_forecasts` (per estimator):

* wide: `{benchmark: DataFrame T x N}` (timestamps x symbols), as `baseline_forecasts` returns;
* long: a DataFrame indexed by (`timestamp`, `symbol`) with one column per benchmark, as models
  produce (typically only on test rows).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adaptive_beta.models.durations import Duration, to_periods
from adaptive_beta.training import metrics as M
from adaptive_beta.training.splits import Fold, WalkForwardConfig, make_folds

log = logging.getLogger(__name__)

METRICS = (
    "n",
    "rmse",
    "mae",
    "r2",
    "rmse_true",
    "hedge_error",
    "excess_hedge_var",
    "mse_ratio",
    "mse_ratio_lo",
    "mse_ratio_hi",
    "dm_pvalue",
    "coverage90",
    "interval_width",
    "logloss",
    "brier",
    "accuracy",
)
HIGHER_IS_BETTER = {"r2"}
RECORD_KEYS = ("estimator", "kind", "benchmark", "metric", "split", "value")
MOMENT_ALIASES = {
    "var_b": ("var_b", "var_bench", "var_benchmark", "bench_var", "var_x"),
    "cov": ("cov", "cov_ib", "covariance", "cov_xy"),
    "var_i": ("var_i", "var_asset", "asset_var", "var_y"),
}


# --- configuration ---------------------------------------------------------------------------


class EvalConfig(BaseModel):
    """Everything `evaluate_baselines` needs; `horizon` is the single source of the target horizon."""

    model_config = ConfigDict(extra="forbid")

    horizon: Duration = "30d"  # forward window of the realised beta (also forced onto splits.horizon)
    splits: WalkForwardConfig = Field(default_factory=WalkForwardConfig)
    bootstrap_block: Duration = "60d"  # block length (over time) of the MSE-ratio bootstrap
    n_boot: int = 1000  # bootstrap replications
    alpha: float = 0.10  # 1 - confidence of the MSE-ratio interval
    seed: int = 0  # bootstrap seed
    min_coverage: float = 0.5  # estimators covering less of the target rows are left out
    baselines: dict[str, Any] | None = (
        None  # keyword arguments of adaptive_beta.models.estimators.baselines.BaselineConfig
    )

    @field_validator("alpha", "min_coverage")
    @classmethod
    def _unit_interval(cls, v: float) -> float:
        if not 0.0 <= v < 1.0:
            raise ValueError(f"must be in [0, 1), got {v}")
        return v

    @field_validator("n_boot")
    @classmethod
    def _n_boot(cls, v: int) -> int:
        if v < 10:
            raise ValueError(f"must be at least 10, got {v}")
        return v

    @field_validator("baselines")
    @classmethod
    def _baselines(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v:
            import dataclasses

            from adaptive_beta.models.estimators.baselines import BaselineConfig

            known = {f.name for f in dataclasses.fields(BaselineConfig)}
            unknown = sorted(set(v) - known)
            if unknown:
                raise ValueError(f"unknown baseline setting(s) {unknown}; known: {sorted(known)}")
            BaselineConfig(**{k: tuple(x) if isinstance(x, list) else x for k, x in v.items()})
        return v

    def baseline_config(self):
        """The `adaptive_beta.models.estimators.baselines.BaselineConfig` these settings describe (None: its defaults)."""
        if not self.baselines:
            return None
        from adaptive_beta.models.estimators.baselines import BaselineConfig

        return BaselineConfig(
            **{k: tuple(x) if isinstance(x, list) else x for k, x in self.baselines.items()}
        )

    @model_validator(mode="after")
    def _sync_horizon(self) -> EvalConfig:
        if self.splits.horizon != self.horizon:
            data = self.splits.model_dump()
            data["horizon"] = self.horizon
            object.__setattr__(self, "splits", WalkForwardConfig(**data))
        return self


# --- the scorecard ---------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if float(v).is_integer() and abs(v) >= 1:
        return f"{int(v)}"
    return f"{v:.4g}"


@dataclass
class Scorecard:
    """Records in the docs/CONTRACTS.md format, plus how they were produced (`meta`)."""

    records: list[dict]
    meta: dict = field(default_factory=dict)
    # benchmark -> (timestamp, symbol) index of the common sample every metric was computed on
    # (in memory only, not written by `to_json`): interval metrics are scored on the same rows
    samples: dict = field(default_factory=dict, repr=False, compare=False)

    def to_json(self, path: str | Path) -> Path:
        """Write the record list as JSON atomically (temp file in the same folder, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.records, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> Scorecard:
        records = json.loads(Path(path).read_text())
        if not isinstance(records, list) or any(set(r) != set(RECORD_KEYS) for r in records):
            raise ValueError(
                f"{path}: not a scorecard (expected a JSON list of records with keys {RECORD_KEYS})"
            )
        return cls(records)

    def frame(self, split: str = "pooled") -> pd.DataFrame:
        """Rows (benchmark, estimator), columns metrics, for one split."""
        rows = [r for r in self.records if r["split"] == split]
        if not rows:
            return pd.DataFrame()
        df = pd.DataFrame(rows)
        out = df.pivot_table(
            index=["benchmark", "estimator"], columns="metric", values="value", aggfunc="first"
        )
        kinds = df.drop_duplicates(["benchmark", "estimator"]).set_index(["benchmark", "estimator"])["kind"]
        out.insert(0, "kind", kinds.reindex(out.index))
        return out[["kind", *[m for m in METRICS if m in out.columns]]]

    def value(self, estimator: str, benchmark: str, metric: str, split: str = "pooled") -> float | None:
        for r in self.records:
            if (r["estimator"], r["benchmark"], r["metric"], r["split"]) == (
                estimator,
                benchmark,
                metric,
                split,
            ):
                return r["value"]
        return None

    def best(
        self, benchmark: str, metric: str = "rmse", kind: str | None = None, split: str = "pooled"
    ) -> str:
        """Estimator with the best value of `metric` (highest for r2, lowest otherwise)."""
        vals = {
            r["estimator"]: r["value"]
            for r in self.records
            if r["benchmark"] == benchmark
            and r["metric"] == metric
            and r["split"] == split
            and (kind is None or r["kind"] == kind)
        }
        if not vals:
            raise KeyError(
                f"no {metric!r} records for benchmark {benchmark!r}, split {split!r}, kind {kind!r}"
            )
        pick = max if metric in HIGHER_IS_BETTER else min
        return pick(vals, key=vals.__getitem__)

    def table(self, split: str = "pooled") -> str:
        """Per benchmark, estimators x metrics sorted by rmse (`ratio [lo, hi]` vs the reference)."""
        df = self.frame(split)
        if df.empty:
            return f"(no records for split {split!r})"
        refs = self.meta.get("reference", {})
        blocks = []
        for bench, sub in df.groupby(level="benchmark", sort=False):
            sub = sub.droplevel("benchmark")
            if "rmse" not in sub or sub["rmse"].isna().all():  # e.g. the regime head: classification scores
                cols = [c for c in ("logloss", "brier", "accuracy") if c in sub]
                sub = sub.sort_values(cols[0]) if cols else sub
                rows = [
                    {"estimator": est, "kind": r["kind"], **{c: _fmt(r.get(c)) for c in cols}}
                    for est, r in sub.iterrows()
                ]
                blocks.append(f"== {bench} ({split})\n{pd.DataFrame(rows).to_string(index=False)}")
                continue
            sub = sub.sort_values("rmse")
            cols = [
                c
                for c in ("n", "rmse", "mae", "r2", "rmse_true", "hedge_error", "excess_hedge_var")
                if c in sub
            ]
            rows = []
            for est, r in sub.iterrows():
                row = {"estimator": est, "kind": r["kind"], **{c: _fmt(r.get(c)) for c in cols}}
                if "mse_ratio" in sub:
                    row["mse_ratio [90%]"] = (
                        f"{_fmt(r.get('mse_ratio'))} [{_fmt(r.get('mse_ratio_lo'))}, {_fmt(r.get('mse_ratio_hi'))}]"
                    )
                if "dm_pvalue" in sub:
                    row["dm_p"] = _fmt(r.get("dm_pvalue"))
                if "coverage90" in sub:
                    row["cov90"] = _fmt(r.get("coverage90"))
                rows.append(row)
            text = pd.DataFrame(rows).to_string(index=False)
            ref = refs.get(bench)
            head = f"== {bench} ({split})" + (
                f"; reference for mse_ratio/dm_p: {ref} (chosen ex post)" if ref else ""
            )
            blocks.append(f"{head}\n{text}")
        return "\n\n".join(blocks)


# --- input normalisation -----------------------------------------------------------------------


def _long_series(obj: pd.DataFrame | pd.Series) -> pd.Series:
    """A wide T x N frame or a long (timestamp, symbol) series as a long float series."""
    if isinstance(obj, pd.Series):
        s = obj
    elif isinstance(obj.index, pd.MultiIndex):
        if obj.shape[1] != 1:
            raise ValueError("a long forecast frame per benchmark must have exactly one column")
        s = obj.iloc[:, 0]
    else:
        s = obj.stack(future_stack=True)
    s = s.astype(float)
    s.index = s.index.set_names(["timestamp", "symbol"])
    return s


def forecasts_long(forecast: Mapping[str, pd.DataFrame] | pd.DataFrame, benchmark: str) -> pd.Series | None:
    """One estimator's forecasts for `benchmark` as a (timestamp, symbol) series (None if absent)."""
    if isinstance(forecast, pd.DataFrame) and isinstance(forecast.index, pd.MultiIndex):
        if benchmark not in forecast.columns:
            return None
        return _long_series(forecast[benchmark])
    if isinstance(forecast, Mapping):
        if benchmark not in forecast:
            return None
        return _long_series(forecast[benchmark])
    raise TypeError(
        "forecasts must be {benchmark: wide T x N DataFrame} or a DataFrame indexed by (timestamp, symbol) "
        f"with a column per benchmark; got {type(forecast).__name__}"
    )


def _pick(columns, names: tuple[str, ...]):
    low = {str(c).lower(): c for c in columns}
    for n in names:
        if n in low:
            return low[n]
    return None


def moments_long(moments: Any, benchmark: str) -> pd.DataFrame | None:
    """Forward moments for one benchmark as a (timestamp, symbol) frame with var_b, cov, var_i.

    Accepts the flat columns of `adaptive_beta.models.features.targets.forward_moments` (`var_bench_<B>`, `cov_<B>`,
    `var_asset_<B>`), a frame indexed by (timestamp, symbol, benchmark), a frame with (benchmark,
    stat) or (stat, benchmark) column MultiIndex, or a mapping benchmark -> frame.
    """
    if moments is None:
        return None
    sub: pd.DataFrame | None = None
    if isinstance(moments, Mapping):
        sub = moments.get(benchmark)
    elif isinstance(moments, pd.DataFrame):
        if isinstance(moments.index, pd.MultiIndex) and "benchmark" in moments.index.names:
            if benchmark not in moments.index.get_level_values("benchmark"):
                return None
            sub = moments.xs(benchmark, level="benchmark")
        elif isinstance(moments.columns, pd.MultiIndex):
            for lvl in range(moments.columns.nlevels):
                if benchmark in moments.columns.get_level_values(lvl):
                    sub = moments.xs(benchmark, axis=1, level=lvl)
                    break
        else:
            cols = {
                k: _pick(moments.columns, tuple(f"{a}_{benchmark}".lower() for a in v))
                for k, v in MOMENT_ALIASES.items()
            }
            if cols["var_i"] is None:
                cols["var_i"] = _pick(moments.columns, MOMENT_ALIASES["var_i"])
            if all(c is not None for c in cols.values()):
                sub = moments[[cols["var_b"], cols["cov"], cols["var_i"]]].set_axis(
                    ["var_b", "cov", "var_i"], axis=1
                )
    if sub is None:
        return None
    out = {}
    for key, names in MOMENT_ALIASES.items():
        col = _pick(sub.columns, names)
        if col is None:
            raise ValueError(
                f"forward moments for {benchmark!r} lack a {key!r} column (have {list(sub.columns)})"
            )
        out[key] = sub[col].astype(float)
    frame = pd.DataFrame(out)
    frame.index = frame.index.set_names(["timestamp", "symbol"])
    return frame


def training_means(realised: pd.DataFrame, folds: list[Fold]) -> dict[int, dict[str, float]]:
    """Per fold and benchmark, the mean realised beta over the fold's training rows (non-trivial pairs)."""
    sym = realised.index.get_level_values("symbol")
    out: dict[int, dict[str, float]] = {}
    for f in folds:
        m = f.mask(realised.index, "train")
        out[f.k] = {}
        for b in realised.columns:
            v = realised[b].to_numpy(dtype=float)[m & (sym != b)]
            v = v[np.isfinite(v)]
            out[f.k][b] = float(v.mean()) if v.size else float("nan")
    return out


# --- scoring -------------------------------------------------------------------------------------


def _record(est: str, kind: str, bench: str, metric: str, split: str, value: float) -> dict | None:
    value = float(value)
    if not math.isfinite(value):
        return None
    if metric == "n":
        value = int(value)
    return {
        "estimator": est,
        "kind": kind,
        "benchmark": bench,
        "metric": metric,
        "split": split,
        "value": value,
    }


def _common_sample(
    names: list[str],
    series: dict[str, pd.Series],
    base: pd.DataFrame,
    min_coverage: float,
    bench: str,
) -> tuple[pd.DataFrame, list[str]]:
    """Join forecasts onto the scored rows; drop low-coverage estimators, then rows with any gap."""
    data = base.copy()
    kept = []
    n_target = len(data)
    for name in names:
        s = series[name]
        s = s[~s.index.duplicated(keep="last")]
        col = s.reindex(data.index).to_numpy(dtype=float)
        cover = float(np.isfinite(col).mean()) if n_target else 0.0
        if cover < min_coverage:
            log.warning(
                "benchmark %s: estimator %s covers %.0f%% of the scored rows (< %.0f%%): left out",
                bench,
                name,
                100 * cover,
                100 * min_coverage,
            )
            continue
        data[f"f:{name}"] = col
        kept.append(name)
    cols = [f"f:{n}" for n in kept]
    ok = np.isfinite(data[cols].to_numpy()).all(axis=1) if cols else np.zeros(len(data), bool)
    return data[ok], kept


def _reference(names: list[str], kinds: Mapping[str, str], mse: dict[str, float]) -> str | None:
    pool = [n for n in names if n.startswith("rolling_ols")]
    if not pool:
        pool = [n for n in names if kinds.get(n, "baseline") == "baseline"]
    pool = [n for n in pool if math.isfinite(mse.get(n, float("nan")))]
    return min(pool, key=mse.__getitem__) if pool else None


def score_forecasts(
    forecasts: Mapping[str, Mapping[str, pd.DataFrame] | pd.DataFrame],
    kinds: Mapping[str, str],
    realised: pd.DataFrame,
    moments: Any,
    folds: list[Fold],
    truth: pd.DataFrame | None = None,
    train_means: Mapping[int, Mapping[str, float]] | None = None,
    *,
    horizon_bars: int = 1,
    block_bars: int = 60,
    n_boot: int = 1000,
    alpha: float = 0.10,
    seed: int = 0,
    min_coverage: float = 0.5,
    progress: bool = True,
    ray_address: str | None = None,
) -> Scorecard:
    """Score every estimator x benchmark x split; returns a `Scorecard` (records + meta).

    forecasts: estimator -> wide `{benchmark: T x N}` or long frame (see module docstring).
    kinds: estimator -> "baseline" | "model" (missing -> "baseline").
    realised: forward realised betas, (timestamp, symbol) x benchmark (`adaptive_beta.models.features.targets.forward_betas`).
    moments: forward moments (`adaptive_beta.models.features.targets.forward_moments`) or None to skip hedge metrics.
    truth: true forward betas (simulated data) or None.
    train_means: fold k -> benchmark -> mean realised beta on fold k's training rows, the centre
        of R^2's SST; computed from `realised` when None.
    horizon_bars: DM horizon h; block_bars: bootstrap block length in bars.
    ray_address: score each benchmark x split as a Ray task there (same records); None: here.
    """
    from tqdm.auto import tqdm

    if not folds:
        raise ValueError("no folds to score: make_folds returned none")
    realised = realised.sort_index()
    if train_means is None:
        train_means = training_means(realised, folds)
    fold_of = _test_fold_of(realised.index, folds)
    records: list[dict] = []
    meta: dict = {
        "reference": {},
        "left_out": {},
        "folds": [f.to_dict() for f in folds],
        "horizon_bars": horizon_bars,
        "block_bars": block_bars,
    }
    benches = list(realised.columns)
    samples: dict[str, pd.Index] = {}
    jobs: list[tuple] = []  # (common-sample frame, rows, estimators, bench, split, reference)
    bar = tqdm(
        total=len(benches) * (len(folds) + 1), desc="scoring", disable=None if progress else True, leave=False
    )
    for bench in benches:
        base = _scored_rows(bench, realised, fold_of, train_means, truth, moments)
        data, kept = _common_sample_for(bench, forecasts, base, min_coverage)
        samples[bench] = data.index
        meta["left_out"][bench] = sorted(set(forecasts) - set(kept))
        if data.empty:
            log.warning(
                "benchmark %s: no rows where every estimator has a forecast and the target is finite", bench
            )
            bar.update(len(folds) + 1)
            continue
        ref = _reference_on(data, kept, kinds)
        meta["reference"][bench] = ref
        for split, sel in _splits(data, folds):
            jobs.append((data, sel, kept, bench, split, ref))
            bar.update(1)
    records = _score_jobs(jobs, (kinds, horizon_bars, block_bars, n_boot, alpha, seed), ray_address)
    bar.close()
    return Scorecard(records, meta, samples)


def _score_rows(data: pd.DataFrame, sel, kept, bench, split, ref, kinds, h, block, n_boot, alpha, seed):
    """One benchmark x split: its rows of the common sample, scored (none when the split is empty)."""
    sub = data[sel]
    if sub.empty:
        return []
    return _score_split(sub, kept, kinds, bench, split, ref, h, block, n_boot, alpha, seed)


def _score_jobs(jobs: list[tuple], args: tuple, ray_address: str | None) -> list[dict]:
    """Every benchmark x split scored, in order: here, or as Ray tasks at `ray_address` (each
    benchmark's common-sample frame put once in the object store; the bootstrap is seeded, so the
    records are the same)."""
    if not ray_address:
        return [r for job in jobs for r in _score_rows(*job, *args)]
    from adaptive_beta.training.cluster import ray_session

    with ray_session(ray_address) as ray:
        task = ray.remote(num_cpus=1, max_retries=0)(_score_rows)
        put: dict[int, Any] = {}  # id(frame) -> its object ref: once per benchmark
        futures = []
        for data, *rest in jobs:
            if id(data) not in put:
                put[id(data)] = ray.put(data)
            futures.append(task.remote(put[id(data)], *rest, *args))
        return [r for part in ray.get(futures) for r in part]


def _test_fold_of(index: pd.MultiIndex, folds: list[Fold]) -> np.ndarray:
    """Per row, the fold whose TEST block holds it (-1: none): only test periods are ever scored."""
    fold_of = np.full(len(index), -1)
    for f in folds:
        fold_of[f.mask(index, "test")] = f.k
    return fold_of


def _scored_rows(
    bench: str,
    realised: pd.DataFrame,
    fold_of: np.ndarray,
    train_means: Mapping[int, Mapping[str, float]],
    truth: pd.DataFrame | None,
    moments: Any,
) -> pd.DataFrame:
    """The rows `bench` can be scored on (test period, finite target, asset is not the benchmark)
    with what the metrics need beside the forecasts: target, fold, R^2 centre, truth, moments."""
    sym = realised.index.get_level_values("symbol")
    target = realised[bench].to_numpy(dtype=float)
    rows = (fold_of >= 0) & np.isfinite(target) & (np.asarray(sym) != bench)
    base = pd.DataFrame({"target": target[rows], "fold": fold_of[rows]}, index=realised.index[rows])
    base["train_mean"] = [train_means[k].get(bench, np.nan) for k in base["fold"]]
    if truth is not None and bench in truth.columns:
        base["truth"] = truth[bench].reindex(base.index).to_numpy(dtype=float)
    mom = moments_long(moments, bench)
    if mom is not None:
        base[["var_b", "cov", "var_i"]] = mom.reindex(base.index)[["var_b", "cov", "var_i"]].to_numpy(float)
    return base


def _common_sample_for(
    bench: str, forecasts: Mapping, base: pd.DataFrame, min_coverage: float
) -> tuple[pd.DataFrame, list[str]]:
    """Every estimator that forecasts `bench`, joined onto the scored rows on the common sample
    (see `_common_sample`), so all estimators of a benchmark are scored on the same rows."""
    names = list(forecasts)
    series = {n: forecasts_long(forecasts[n], bench) for n in names}
    have = [n for n in names if series[n] is not None]
    return _common_sample(have, series, base, min_coverage, bench)


def _reference_on(data: pd.DataFrame, kept: list[str], kinds: Mapping[str, str]) -> str | None:
    """The ex-post reference of `mse_ratio`/`dm_pvalue`, by pooled MSE on the common sample."""
    y = data["target"].to_numpy()
    mse = {n: float(np.mean((data[f"f:{n}"].to_numpy() - y) ** 2)) for n in kept}
    return _reference(kept, kinds, mse)


def _splits(data: pd.DataFrame, folds: list[Fold]) -> list[tuple[str, Any]]:
    """(split name, row selector): each fold's test block, then all of them pooled."""
    return [(f.name, data["fold"].to_numpy() == f.k) for f in folds] + [("pooled", slice(None))]


def _score_split(
    sub: pd.DataFrame,
    names: list[str],
    kinds: Mapping[str, str],
    bench: str,
    split: str,
    ref: str | None,
    h: int,
    block: int,
    n_boot: int,
    alpha: float,
    seed: int,
) -> list[dict]:
    y = sub["target"].to_numpy()
    stamps = sub.index.get_level_values("timestamp")
    has_truth = "truth" in sub and np.isfinite(sub["truth"].to_numpy()).any()
    has_moments = "var_b" in sub
    if ref is not None:
        ref_loss = pd.Series((sub[f"f:{ref}"].to_numpy() - y) ** 2).groupby(stamps)
        ref_mean, ref_sum = ref_loss.mean().to_numpy(), ref_loss.sum().to_numpy()
    out: list[dict | None] = []
    for n in names:
        kind = kinds.get(n, "baseline")
        p = sub[f"f:{n}"].to_numpy()
        vals = {
            "n": len(sub),
            "rmse": M.rmse(p, y),
            "mae": M.mae(p, y),
            "r2": M.r2_oos(p, y, sub["train_mean"].to_numpy()),
        }
        if has_truth:
            vals["rmse_true"] = M.rmse(p, sub["truth"].to_numpy())
        if has_moments:
            vals["hedge_error"] = M.hedge_error(p, sub["var_i"], sub["cov"], sub["var_b"])
            vals["excess_hedge_var"] = M.excess_hedge_var(p, y, sub["var_b"])
        if ref is not None:
            loss = pd.Series((p - y) ** 2).groupby(stamps)
            ratio, lo, hi = M.block_bootstrap_ratio(
                loss.sum().to_numpy(), ref_sum, block=block, n_boot=n_boot, alpha=alpha, seed=seed
            )
            vals.update(mse_ratio=ratio, mse_ratio_lo=lo, mse_ratio_hi=hi)
            if n != ref:
                vals["dm_pvalue"] = M.diebold_mariano(loss.mean().to_numpy(), ref_mean, h=h).pvalue
            if n != ref and split == "pooled":  # diagnostic: the fixed block beside Politis-White's
                vals["mse_ratio_block"] = block
                vals["mse_ratio_block_opt"] = M.optimal_block(loss.sum().to_numpy(), ref_sum)
        out += [_record(n, kind, bench, m, split, v) for m, v in vals.items()]
    return [r for r in out if r is not None]


# --- baselines end to end ----------------------------------------------------------------------


def evaluate_baselines(
    panel, cfg: EvalConfig | None = None, progress: bool = True, ray_address: str | None = None
) -> Scorecard:
    """Walk-forward scorecard of every classical baseline on a `Panel` (scored as Ray tasks at
    `ray_address` when given: the bootstrap of every benchmark x split is the work that parallelises).

    Baseline forecasts are causal over the whole panel (row t uses rows <= t), so they are
    computed once and scored on each fold's test block; no fitting happens on the folds.
    """
    from adaptive_beta.models.estimators.baselines import baseline_forecasts
    from adaptive_beta.models.features.targets import forward_betas, forward_moments, true_forward_betas

    cfg = cfg or EvalConfig()
    folds = make_folds(panel.index, cfg.splits)
    bcfg = cfg.baseline_config()
    forecasts = baseline_forecasts(
        panel.returns(), panel.benchmark_returns(), panel.factor_returns(), panel.freq, bcfg
    )
    realised = forward_betas(panel, cfg.horizon)
    moments = forward_moments(panel, cfg.horizon)
    truth = true_forward_betas(panel, cfg.horizon) if "truth_betas" in panel.meta else None
    card = score_forecasts(
        forecasts,
        {n: "baseline" for n in forecasts},
        realised,
        moments,
        folds,
        truth,
        horizon_bars=to_periods(cfg.horizon, panel.freq),
        block_bars=to_periods(cfg.bootstrap_block, panel.freq),
        n_boot=cfg.n_boot,
        alpha=cfg.alpha,
        seed=cfg.seed,
        min_coverage=cfg.min_coverage,
        progress=progress,
        ray_address=ray_address,
    )
    card.meta.update(
        horizon=cfg.horizon,
        freq=panel.freq_label,
        config=cfg.model_dump(),
        data=panel.describe(),
        fingerprint=panel.fingerprint(),
    )
    return card
