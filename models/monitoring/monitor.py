"""Monitoring a deployed bundle: feature drift against training, forecast error, beta shifts.

Three questions, each answered from data the system already has:

1. *Do recent inputs look like the training inputs?*  PSI per feature and per feature group
   (models/monitoring/drift.py) of recent feature rows against the training distribution.  The bundle
   carries only means and standard deviations of its features (normalization.json), which
   cannot tell a fat tail or a dead feed from a normal week, so the reference is **recomputed
   from the training data**: the bundle's `data_source` (or `--reference-data`) cut to its
   `training_period`, featurised with the bundle's own FeatureSpec, rows inside each asset's
   feature warm-up dropped (there the long windows are NaN by construction, not by drift).  A
   computed reference can be saved as JSON (`save_reference`) and reused by scheduled runs.
   Recent rows come from the audit log (the feature row logged with every served forecast,
   one per (asset, bar): repeated calls for the same bar count once) or from a data window
   featurised the same way.
2. *Are the forecasts still as accurate as the scorecard said?*  Once a forecast's horizon has
   passed, its realised forward beta (adaptive_beta.models.features.targets.forward_betas on the data) is known; the
   RMSE over the last `error_window` of completed forecasts is compared with the model's pooled
   walk-forward RMSE recorded in the bundle (`meta.metrics.model_mse`).
3. *Has an asset's beta moved out of the model's reach?*  Realised beta outside the forecast
   interval, on one side, for `shift_consecutive` periods in a row (adaptive_beta.models.monitoring.drift.beta_shift_runs).

Forecasts come from the audit log (`/forecast` records) or, with a data window only, from
running the bundle's ONNX graph on every bar of the window (what the service would have said).
Torch-free: numpy, pandas, onnxruntime and the `models` package, so the prediction service
(GET /monitor, serving/endpoints/monitor.py) and `abeta monitor` (training/monitor.py: reading the
audit log, `run_monitor`) share this one implementation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from adaptive_beta.models.data.schema import DataError, Panel
from adaptive_beta.models.durations import Duration, parse_duration
from adaptive_beta.models.monitoring.drift import (
    FeatureReference,
    beta_shift_runs,
    build_reference,
    feature_psi,
    group_psi,
)


class MonitorConfig(BaseModel):
    """What is measured and when it is an alert; the defaults are the documented thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_bins: int = Field(10, ge=2)  # quantile bins of each training feature (plus a missing bin)
    psi_warn: float = Field(0.1, gt=0)  # conventional "watch" level
    psi_alert: float = Field(0.25, gt=0)  # conventional "material shift": a group mean above it alerts
    window: Duration = "90d"  # recent window when --since is not given (ends at --until or the last bar)
    shift_period: Duration = "7d"  # calendar period of the beta-shift count
    shift_consecutive: int = Field(3, ge=1)  # periods in a row outside the interval to flag a series
    error_window: Duration = "60d"  # completed forecasts (by as_of) in the rolling RMSE
    rmse_ratio_alert: float = Field(1.5, gt=0)  # alert when rolling RMSE > this x scorecard RMSE
    min_completed: int = Field(20, ge=1)  # fewer completed forecasts: no RMSE verdict
    # left out of PSI (fnmatch patterns): staleness is calendar bookkeeping, and its values move
    # with daylight saving (a 16:00 New York close is 20:00 or 21:00 UTC), not with the market
    exclude_features: tuple[str, ...] = ("*_stale",)


# ------------------------------------------------------------------------------- bundle facts
def training_window(bundle) -> tuple[pd.Timestamp | None, pd.Timestamp]:
    """(start, end) of the rows the bundle was fitted on (meta `training_period`; start None = open)."""
    start, end = bundle.meta.training_period.bounds()
    if end is None:
        raise DataError(
            "bundle meta.json training_period has no end; pass a saved --reference",
            file=str(Path(bundle.path) / "meta.json"),
        )
    return start, end


def scorecard_rmse(bundle) -> dict[str, float]:
    """Per benchmark, the pooled walk-forward RMSE (sqrt of meta.metrics.model_mse), else validation RMSE."""
    metrics = bundle.meta.metrics
    mse = metrics.get("model_mse") or {}
    out = {}
    for b in bundle.benchmarks:
        if b in mse and mse[b] is not None and math.isfinite(mse[b]):
            out[b] = math.sqrt(float(mse[b]))
        elif f"val_rmse_{b}" in metrics:
            out[b] = float(metrics[f"val_rmse_{b}"])
    return out


def feature_groups(bundle) -> dict[str, str]:
    fg = bundle.meta.feature_groups
    return {c: str(fg.get(c, "other")) for c in bundle.feature_columns}


def _utc(t) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# ------------------------------------------------------------------------------- features
def warmed_up(frame: pd.DataFrame, panel: Panel, warmup_bars: int) -> np.ndarray:
    """Mask of feature rows whose asset has at least `warmup_bars` bars of history at that bar."""
    close = panel.close
    first = {s: close[s].first_valid_index() for s in close.columns}
    pos = pd.Series(np.arange(len(panel.index)), index=panel.index)
    t = pos.reindex(frame.index.get_level_values("timestamp")).to_numpy()
    syms = frame.index.get_level_values("symbol")
    start = np.array([pos[first[s]] if first.get(s) is not None else np.iinfo(np.int64).max for s in syms])
    return (t - start) >= warmup_bars


def panel_features(bundle, panel: Panel, since=None, until=None) -> pd.DataFrame:
    """Feature rows (bundle columns) with since <= timestamp <= until, from all history up to until.

    Rows inside an asset's feature warm-up are dropped (their long windows are NaN by design).
    """
    from adaptive_beta.models.features.compute import compute_features

    hist = panel.slice(None, until) if until is not None else panel
    table = compute_features(hist, bundle.spec)
    missing = [c for c in bundle.feature_columns if c not in table.frame.columns]
    if missing:
        raise DataError(f"the data does not produce feature column(s) {missing[:5]} the model expects")
    frame = table.frame[bundle.feature_columns]
    ts = frame.index.get_level_values("timestamp")
    keep = np.ones(len(frame), dtype=bool)
    if since is not None:
        keep &= np.asarray(ts >= since)
    keep &= warmed_up(frame, hist, bundle.spec.min_history(hist.freq))
    return frame[keep]


def reference_from_data(bundle, panel: Panel, n_bins: int = 10) -> dict[str, FeatureReference]:
    """Training reference: quantile bins of the bundle's features over its training period."""
    start, end = training_window(bundle)
    frame = panel_features(bundle, panel, start, end)
    if len(frame) == 0:
        raise DataError(
            f"no feature rows in the training period {start} .. {end} of the reference data "
            f"({panel.describe()}); is it the data the model was trained on?"
        )
    return build_reference(frame, feature_groups(bundle), n_bins)


def training_reference(
    bundle,
    n_bins: int = 10,
    reference_file: str | Path | None = None,
    reference_data: str | Path | None = None,
    loaded: tuple[str | Path, Panel] | None = None,
    how: str = "pass --reference-data or --reference",
) -> dict[str, FeatureReference]:
    """The training reference of `bundle`: a saved file, else its training data featurised.

    Order: `reference_file` (load_reference), else `reference_data` or the bundle's meta
    `data_source` cut to `training_period` (reference_from_data).  `loaded` = (path, panel) already
    in memory, reused when it is that same data.  `how` ends the error messages: it tells the
    caller (CLI flags, service environment) how to provide a reference.  Raises DataError.
    """
    from adaptive_beta.models.data.loaders import load_dataset

    if reference_file is not None:
        return load_reference(reference_file, bundle)
    src = reference_data or bundle.meta.data_source
    if not src:
        raise DataError(f"the bundle does not record its training data; {how}")
    if loaded is not None and Path(str(src)).resolve() == Path(str(loaded[0])).resolve():
        ref_panel = loaded[1]
    elif not Path(str(src)).exists():
        raise DataError(f"training data {src} (bundle meta data_source) is not here; {how}")
    else:
        ref_panel = load_dataset(src)
    return reference_from_data(bundle, ref_panel, n_bins)


def save_reference(reference: dict[str, FeatureReference], path: str | Path, bundle) -> None:
    """Write a reference as JSON, tagged with the bundle identity it belongs to."""
    body = {
        "bundle_sha256": bundle.sha256,
        "feature_spec_hash": bundle.meta.feature_spec_hash,
        "features": {k: v.to_dict() for k, v in reference.items()},
    }
    Path(path).write_text(json.dumps(body, indent=1) + "\n")


def load_reference(path: str | Path, bundle) -> dict[str, FeatureReference]:
    """Read a saved reference; refuse one saved for another feature spec."""
    p = Path(path)
    try:
        body = json.loads(p.read_text())
        feats = {k: FeatureReference.from_dict(v) for k, v in body["features"].items()}
    except FileNotFoundError as exc:
        raise DataError("reference file not found", file=str(p)) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"not a saved monitoring reference ({exc})", file=str(p)) from exc
    want = bundle.meta.feature_spec_hash
    if want and body.get("feature_spec_hash") not in (None, want):
        raise DataError(
            f"reference was built for feature spec {str(body['feature_spec_hash'])[:12]}..., "
            f"the model uses {want[:12]}...",
            file=str(p),
        )
    return feats


# ------------------------------------------------------------------------------- audit records
def audit_features(records: list[dict], columns: list[str]) -> pd.DataFrame:
    """Logged feature rows, one per (as_of, symbol) (the latest record wins), bundle columns."""
    rows, index = {}, {}
    for rec in records:
        feats = rec.get("features") or {}
        as_of, by_sym = feats.get("as_of") or {}, feats.get("rows") or {}
        for sym, row in by_sym.items():
            key = (_utc(as_of.get(sym, rec.get("ts"))), sym)
            rows[key] = [np.nan if row.get(c) is None else float(row.get(c)) for c in columns]
            index[key] = key
    if not rows:
        return pd.DataFrame(
            columns=columns, index=pd.MultiIndex.from_arrays([[], []], names=["timestamp", "symbol"])
        )
    idx = pd.MultiIndex.from_tuples(list(rows), names=["timestamp", "symbol"])
    return pd.DataFrame(list(rows.values()), index=idx, columns=columns).sort_index()


FORECAST_COLUMNS = ["as_of", "symbol", "benchmark", "beta", "lo", "hi"]


def audit_forecasts(records: list[dict]) -> pd.DataFrame:
    """Served /forecast betas with intervals, one per (as_of, symbol, benchmark) (latest wins)."""
    seen: dict[tuple, list] = {}
    for rec in records:
        if rec.get("endpoint") != "/forecast":
            continue
        for f in (rec.get("output") or {}).get("forecasts", []):
            for bench, b in (f.get("betas") or {}).items():
                key = (_utc(f["as_of"]), f["symbol"], bench)
                seen[key] = [*key, float(b["beta"]), float(b["lo"]), float(b["hi"])]
    return pd.DataFrame(list(seen.values()), columns=FORECAST_COLUMNS)


# ------------------------------------------------------------------------------- forecasts
def panel_forecasts(bundle, panel: Panel, since=None, until=None, batch: int = 2048) -> pd.DataFrame:
    """What the bundle forecasts at every (bar, asset) of [since, until] with a full window (ONNX Runtime)."""
    from adaptive_beta.models.bundle.inference import predict_every_bar

    hist = panel.slice(None, until) if until is not None else panel
    rows = None if since is None else np.nonzero(np.asarray(hist.index >= since))[0]
    long, _ = predict_every_bar(hist, bundle, rows, require_history=False, batch=batch)
    if long.empty:
        return pd.DataFrame(columns=FORECAST_COLUMNS)
    as_of = long.index.get_level_values("timestamp")
    symbols = long.index.get_level_values("symbol").to_numpy()
    parts = [
        pd.DataFrame(
            {
                "as_of": as_of,
                "symbol": symbols,
                "benchmark": b,
                "beta": long[b].to_numpy(np.float64),
                "lo": long[f"{b}_lo"].to_numpy(np.float64),
                "hi": long[f"{b}_hi"].to_numpy(np.float64),
            }
        )
        for b in bundle.benchmarks
    ]
    return pd.concat(parts, ignore_index=True)


def attach_realised(forecasts: pd.DataFrame, panel: Panel, horizon: str) -> pd.DataFrame:
    """Forecasts whose horizon has completed in `panel`, with the realised forward beta (`realised`).

    A benchmark's own asset (BTC against BTC: beta 1 by construction) is left out.
    """
    from adaptive_beta.models.features.targets import forward_betas

    if forecasts.empty:
        return forecasts.assign(realised=pd.Series(dtype=float))
    fb = forward_betas(panel, horizon)
    out = []
    for b, part in forecasts.groupby("benchmark", sort=False):
        if b not in fb.columns:
            continue
        part = part[part["symbol"] != b]
        key = pd.MultiIndex.from_arrays([part["as_of"], part["symbol"]])
        realised = fb[b].reindex(key).to_numpy()
        out.append(part.assign(realised=realised))
    done = pd.concat(out, ignore_index=True) if out else forecasts.assign(realised=np.nan).iloc[:0]
    return done[np.isfinite(done["realised"].to_numpy(dtype=float))].reset_index(drop=True)


def error_summary(
    completed: pd.DataFrame, reference_rmse: dict[str, float], cfg: MonitorConfig
) -> list[dict]:
    """Per benchmark: rolling RMSE over the last `error_window` of completed forecasts vs the scorecard."""
    rows = []
    if completed.empty:
        return rows
    window = parse_duration(cfg.error_window)
    for b, part in completed.groupby("benchmark", sort=True):
        recent = part[part["as_of"] > part["as_of"].max() - window]
        err = (recent["beta"] - recent["realised"]).to_numpy(dtype=float)
        inside = ((recent["realised"] >= recent["lo"]) & (recent["realised"] <= recent["hi"])).to_numpy()
        rmse = float(np.sqrt(np.mean(err**2))) if len(err) else float("nan")
        ref = reference_rmse.get(b)
        ratio = rmse / ref if ref else float("nan")
        enough = len(err) >= cfg.min_completed
        rows.append(
            {
                "benchmark": b,
                "n": int(len(err)),
                "from": recent["as_of"].min().isoformat(),
                "to": recent["as_of"].max().isoformat(),
                "rmse": rmse,
                "bias": float(np.mean(err)) if len(err) else float("nan"),
                "coverage": float(inside.mean()) if len(inside) else float("nan"),
                "scorecard_rmse": ref,
                "ratio": ratio,
                "alert": bool(enough and np.isfinite(ratio) and ratio > cfg.rmse_ratio_alert),
            }
        )
    return rows


def error_by_period(completed: pd.DataFrame, period: str) -> list[dict]:
    """RMSE and interval coverage per period of as_of, per benchmark: the error as horizons complete."""
    if completed.empty:
        return []
    td = parse_duration(period)
    origin = completed["as_of"].min()
    df = completed.assign(
        period=((completed["as_of"] - origin) // td).astype(np.int64),
        sq=(completed["beta"] - completed["realised"]) ** 2,
        inside=(
            (completed["realised"] >= completed["lo"]) & (completed["realised"] <= completed["hi"])
        ).astype(float),
    )
    g = df.groupby(["benchmark", "period"]).agg(
        n=("sq", "size"), mse=("sq", "mean"), coverage=("inside", "mean")
    )
    return [
        {
            "benchmark": b,
            "period_start": (origin + int(p) * td).isoformat(),
            "n": int(r.n),
            "rmse": float(np.sqrt(r.mse)),
            "coverage": float(r.coverage),
        }
        for (b, p), r in g.iterrows()
    ]


# ------------------------------------------------------------------------------- report
@dataclass
class MonitorReport:
    """Everything one monitoring pass found; `alerts` empty means nothing crossed a threshold."""

    model: dict
    window: dict
    source: str  # "audit" or "data"
    psi_features: pd.DataFrame
    psi_groups: pd.DataFrame
    errors: list[dict]
    errors_by_period: list[dict]
    shifts: pd.DataFrame
    config: MonitorConfig
    alerts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.alerts else 0

    def group_psi(self) -> dict[str, float]:
        return {r.group: float(r.psi) for r in self.psi_groups.itertuples()}

    def flagged_shifts(self) -> pd.DataFrame:
        return self.shifts[self.shifts["flagged"]] if len(self.shifts) else self.shifts

    def to_dict(self) -> dict:
        return _jsonable(
            {
                "model": self.model,
                "window": self.window,
                "source": self.source,
                "config": self.config.model_dump(),
                "alerts": self.alerts,
                "notes": self.notes,
                "psi_groups": self.psi_groups.to_dict(orient="records"),
                "psi_features": self.psi_features.to_dict(orient="records"),
                "forecast_errors": self.errors,
                "forecast_errors_by_period": self.errors_by_period,
                "beta_shifts": self.shifts.to_dict(orient="records"),
            }
        )

    def write_json(self, path: str | Path) -> None:
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(p)

    def table(self) -> str:
        """Human-readable summary: PSI by group, forecast error, flagged shifts, verdict."""
        lines = [
            f"model {self.model.get('name')} {self.model.get('version') or ''} "
            f"(bundle {str(self.model.get('bundle_sha256'))[:12]}), {self.source} window "
            f"{self.window.get('since')} .. {self.window.get('until')}, {self.window.get('rows', 0)} feature rows",
            "",
            f"{'group':<18}{'PSI':>8}{'max':>8}  {'status':<8}{'drift/watch/all':>16}  worst feature",
        ]
        for r in self.psi_groups.itertuples():
            lines.append(
                f"{r.group:<18}{r.psi:>8.3f}{r.psi_max:>8.3f}  {r.status:<8}"
                f"{f'{r.n_drift}/{r.n_watch}/{r.n_features}':>16}  {r.worst_feature}"
            )
        lines += ["", f"{'benchmark':<12}{'n':>6}{'RMSE':>8}{'scorecard':>10}{'ratio':>7}{'cover':>7}  alert"]
        for e in self.errors:
            sc = e["scorecard_rmse"]
            lines.append(
                f"{e['benchmark']:<12}{e['n']:>6}{e['rmse']:>8.3f}{(sc if sc else float('nan')):>10.3f}"
                f"{e['ratio']:>7.2f}{e['coverage']:>7.2f}  {'ALERT' if e['alert'] else '-'}"
            )
        if not self.errors:
            lines.append("(no completed forecasts in the window)")
        flagged = self.flagged_shifts()
        lines += ["", f"beta shifts: {len(flagged)} of {len(self.shifts)} series flagged"]
        for r in flagged.itertuples():
            lines.append(f"  {r.symbol} vs {r.benchmark}: {r.longest_run} periods {r.direction} the interval")
        lines += [""] + [f"note: {n}" for n in self.notes]
        lines.append("ALERT: " + "; ".join(self.alerts) if self.alerts else "no alert")
        return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    return obj


def evaluate(
    bundle,
    reference: dict[str, FeatureReference],
    recent: pd.DataFrame,
    forecasts: pd.DataFrame,
    realised_panel: Panel | None,
    cfg: MonitorConfig,
    source: str,
    window: dict,
    model_version: str | None = None,
) -> MonitorReport:
    """PSI, forecast errors and beta shifts for one window, with alerts by `cfg` (pure of I/O)."""
    from fnmatch import fnmatch

    notes: list[str] = []
    kept = {k: v for k, v in reference.items() if not any(fnmatch(k, pat) for pat in cfg.exclude_features)}
    feats = feature_psi(kept, recent)
    groups = group_psi(feats, cfg.psi_warn, cfg.psi_alert)
    horizon = bundle.meta.horizon or "30d"  # a bare export does not state its target horizon
    completed = pd.DataFrame(columns=[*FORECAST_COLUMNS, "realised"])
    if realised_panel is None:
        notes.append("no market data given: forecast errors and beta shifts are not tracked")
    elif forecasts.empty:
        notes.append("no forecasts in the window")
    else:
        completed = attach_realised(forecasts, realised_panel, horizon)
        notes.append(f"{len(completed)} of {len(forecasts)} forecasts have a completed {horizon} horizon")
    errors = error_summary(completed, scorecard_rmse(bundle), cfg)
    by_period = error_by_period(completed, cfg.shift_period)
    shifts = beta_shift_runs(completed, parse_duration(cfg.shift_period), cfg.shift_consecutive)
    alerts = []
    if len(recent) == 0:
        notes.append("no recent feature rows: PSI not computed")
    for r in groups.itertuples():
        if np.isfinite(r.psi) and r.psi > cfg.psi_alert:
            alerts.append(
                f"PSI of group {r.group} is {r.psi:.3f} > {cfg.psi_alert} (worst: {r.worst_feature})"
            )
    for e in errors:
        if e["alert"]:
            alerts.append(
                f"{e['benchmark']}: rolling RMSE {e['rmse']:.3f} is {e['ratio']:.2f}x the scorecard "
                f"{e['scorecard_rmse']:.3f} (> {cfg.rmse_ratio_alert}x)"
            )
    flagged = shifts[shifts["flagged"]] if len(shifts) else shifts
    if len(flagged):
        alerts.append(
            f"beta shift: {len(flagged)} series outside the interval for >= {cfg.shift_consecutive} "
            f"x {cfg.shift_period}: " + ", ".join(f"{r.symbol}/{r.benchmark}" for r in flagged.itertuples())
        )
    model = {
        "name": bundle.meta.model_name,
        "version": model_version,
        "bundle_sha256": bundle.sha256,
        "run_id": bundle.meta.run_id,
        "horizon": horizon,
        "training_period": bundle.meta.training_period.model_dump(),
    }
    return MonitorReport(
        model,
        {**window, "rows": int(len(recent))},
        source,
        feats,
        groups,
        errors,
        by_period,
        shifts,
        cfg,
        alerts,
        notes,
    )


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None else ts.isoformat()
