"""A model's input as one long table (the "panel frame") and the forecasts it gives, torch-free.

Why a long table: it is what a notebook, a SQL query or `mlflow models serve` hands over, and it
carries exactly what a `/forecast` request carries.  One row per observation:

| column | type | meaning |
|---|---|---|
| `timestamp` | datetime, naive UTC (MLflow's `datetime` type; aware stamps are accepted outside MLflow) | bar OPEN time for an asset or a benchmark; publication time for a factor (00:00 = that date's close, as in the loaders) |
| `symbol` | str | the perp (`SOLUSDT`), a benchmark (`BTCUSDT`, `CRYPTO_EW`) or a factor (`SPY`) |
| `close` | float | close price / level |
| `volume`, `funding_rate`, `open_interest` | float, optional | the asset's extra columns (NaN or absent where unknown) |

A symbol the model names in `required_history.series` (its benchmarks and factors) is an input
series, like the request's `series`; every other symbol is an asset to forecast, like the
request's `assets`.  Each asset needs `required_history.min_periods` bars on the model's grid.

`model_inputs` also takes a loaded `Panel` (every non-input asset at its last bar).
The forecasts frame has one row per asset: `symbol`, `as_of` (open time of the bar the window ends
at), `<benchmark>`, `<benchmark>_lo`, `<benchmark>_hi` for each benchmark (the columns of
`inference.predict_every_bar`) and `regime_<name>` probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from adaptive_beta.models.bundle.folder import Bundle
from adaptive_beta.models.bundle.meta import BundleMeta
from adaptive_beta.models.data.schema import DataError, Panel, find_btc, infer_category, is_bar_series, is_btc

REQUIRED_COLUMNS = ("timestamp", "symbol", "close")
OPTIONAL_COLUMNS = ("volume", "funding_rate", "open_interest")

Observations = Mapping[str, tuple[np.ndarray, dict[str, np.ndarray]]]  # name -> (int64 us UTC, columns)


def is_bar_input(meta: BundleMeta, name: str) -> bool:
    """Whether series `name` is a bar series for this model (on its grid: a benchmark, the
    composite) rather than a factor's irregular observations: what the model's inputs say, else
    the name rule.  The one rule for requests, panel frames, the market-data store and the live state."""
    known = meta.inputs.get(name)
    return known.kind != "factor" if known is not None else is_bar_series(name, meta.benchmarks)


def observation_panel(meta: BundleMeta, assets: Observations, series: Observations) -> Panel:
    """The Panel a model sees for raw observations, built as training built its panel.

    Each series the model knows is a bar series or a factor published by its training calendar
    and lag (`meta.inputs`); a series it does not know follows the loaders' default rule.  The
    one rule for the service's requests and for panel frames.
    """
    from adaptive_beta.models.data.panel_columns import panel_from_observations
    from adaptive_beta.models.data.publication import default_calendar
    from adaptive_beta.models.durations import parse_duration

    bars, factors = {}, {}
    for name, (us, cols) in series.items():
        close = cols["close"]
        known = meta.inputs.get(name)
        if known is not None and known.kind == "factor":
            factors[name] = (us, close, known.category, known.calendar, known.lag)
        elif is_bar_input(meta, name):
            bars[name] = (us, close)
        else:  # a series the model does not use: the loaders' default rule
            category = infer_category(name)
            date_only = bool(len(us)) and bool((us % 86_400_000_000 == 0).all())
            factors[name] = (us, close, category, default_calendar(category, date_only), None)
    freq = parse_duration(meta.freq)
    btc = find_btc(meta.benchmarks)
    return panel_from_observations(dict(assets), bars, factors, freq, btc, meta.max_staleness)


def split_panel_frame(frame: pd.DataFrame, meta: BundleMeta) -> tuple[dict, dict]:
    """(assets, series) observations of a panel frame (see the module docstring), checked.

    Raises DataError naming the column or symbol: a missing column, a non-finite close, or a
    timestamp that repeats within a symbol.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"a panel frame is a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"panel frame lacks column(s) {missing}; it needs {list(REQUIRED_COLUMNS)} "
            f"and optionally {list(OPTIONAL_COLUMNS)}"
        )
    stamps = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    us = stamps.to_numpy(dtype="datetime64[us]").astype(np.int64)
    extras = [c for c in OPTIONAL_COLUMNS if c in frame.columns]
    values = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float) for c in ("close", *extras)}
    symbols = frame["symbol"].astype(str).to_numpy()
    wanted = set(meta.required_history.series)
    assets, series = {}, {}
    for sym in pd.unique(symbols):
        rows = np.flatnonzero(symbols == sym)
        rows = rows[np.argsort(us[rows], kind="stable")]
        t = us[rows]
        if (np.diff(t) == 0).any():
            dup = pd.Timestamp(int(t[np.flatnonzero(np.diff(t) == 0)[0]]), unit="us", tz="UTC")
            raise DataError(f"symbol {sym}: timestamp {dup.isoformat()} appears twice", column=sym)
        if not np.isfinite(values["close"][rows]).all():
            raise DataError(f"symbol {sym}: close is missing or not a number", column=sym)
        cols = {c: v[rows] for c, v in values.items()}
        (series if sym in wanted else assets)[sym] = (t, cols)
    if not assets:
        raise DataError(
            f"panel frame has no asset to forecast: every symbol is one of the model's input series {sorted(wanted)}"
        )
    return assets, series


def model_inputs(bundle: Bundle, data: pd.DataFrame | Panel):
    """The model's windows (`inference.ModelInputs`) for a panel frame or a loaded `Panel`.

    A `Panel` (e.g. `load_dataset`) gives every asset that is not one of the model's input series,
    each at its last bar; a panel frame is read by `split_panel_frame` and `observation_panel`.
    """
    from adaptive_beta.models.bundle.inference import make_inputs

    if isinstance(data, Panel):
        wanted = set(bundle.meta.required_history.series)
        return make_inputs(data, bundle, symbols=[s for s in data.symbols if s not in wanted])
    assets, series = split_panel_frame(data, bundle.meta)
    panel = observation_panel(bundle.meta, assets, series)
    return make_inputs(panel, bundle, symbols=list(assets))


def forecasts_frame(bundle: Bundle, predictor, data: pd.DataFrame | Panel) -> pd.DataFrame:
    """Forecasts frame (one row per asset) of a panel frame or Panel: the service's `/forecast` numbers."""
    inputs = model_inputs(bundle, data)
    out = predictor.predict(inputs.x)
    benches = list(bundle.benchmarks)
    frame: dict[str, object] = {"symbol": inputs.symbols, "as_of": pd.DatetimeIndex(inputs.as_of)}
    for suffix, key in (("", "beta"), ("_lo", "beta_lo"), ("_hi", "beta_hi")):
        for k, b in enumerate(benches):
            frame[f"{b}{suffix}"] = out[key][:, k].astype(np.float64)
    for j, r in enumerate(bundle.meta.regimes):
        frame[f"regime_{r}"] = out["regime_prob"][:, j].astype(np.float64)
    return pd.DataFrame(frame)


def explanations_frame(bundle: Bundle, predictor, data: pd.DataFrame | Panel) -> pd.DataFrame:
    """Exact group Shapley values of each asset's beta, one row per (symbol, benchmark, group).

    Columns: `symbol`, `as_of`, `benchmark`, `group`, `contribution`, `baseline` (the beta of an
    average asset on an average training day) and `beta` (the forecast); per symbol and benchmark
    the contributions add up to `beta - baseline`.  The service's `/forecast` drivers, all groups.
    """
    from adaptive_beta.models.bundle.shapley import batched_beta_shapley, bundle_groups, training_means

    inputs = model_inputs(bundle, data)
    groups = bundle_groups(bundle.meta)
    phi, base, full = batched_beta_shapley(
        predictor.predict, inputs.x, training_means(bundle), list(groups.values())
    )
    rows = []
    for i, sym in enumerate(inputs.symbols):
        for k, b in enumerate(bundle.benchmarks):
            for g, name in enumerate(groups):
                rows.append((sym, inputs.as_of[i], b, name, phi[i, g, k], base[k], full[i, k]))
    columns = ["symbol", "as_of", "benchmark", "group", "contribution", "baseline", "beta"]
    return pd.DataFrame(rows, columns=columns)


def panel_frame_from_panel(
    panel: Panel,
    required,
    symbols: list[str] | None = None,
    raw_factors: Mapping[str, pd.Series] | None = None,
    end: pd.Timestamp | None = None,
    extra_periods: int = 0,
) -> pd.DataFrame:
    """A panel frame with exactly the history a model asks for, cut from a loaded Panel.

    `required`: the model's `required_history` (`BundleMeta.required_history`, or the dict that
    `GET /model` returns).  Assets and benchmarks: the last `min_periods` (+ `extra_periods`) bars
    up to `end` (default the panel's last bar).  Factors: the raw observations
    (`loaders.factor_observations`) made from a week before the first bar to the last bar's
    close, which the model publishes by its own rule.  The one rule for requests built from a
    dataset (`serving.client.forecast_request` writes this frame as a /forecast body).
    """
    req = required if isinstance(required, Mapping) else required.model_dump()
    n = int(req["min_periods"]) + extra_periods
    idx = panel.index if end is None else panel.index[panel.index <= end]
    window = idx[-n:]
    wanted = list(req.get("series", []))
    symbols = list(symbols or [s for s in panel.symbols if s not in wanted])
    both = [s for s in symbols if s in wanted]
    if both:
        raise DataError(f"{both}: an input series of the model, not an asset to forecast")
    parts = []
    for sym in symbols:
        part = pd.DataFrame({"close": panel.close[sym].reindex(window)}, index=window)
        for col in OPTIONAL_COLUMNS:
            part[col] = getattr(panel, col)[sym].reindex(window)
        parts.append(part[part["close"].notna()].assign(symbol=sym))
    start, close = window[0] - pd.Timedelta("7D"), window[-1] + panel.freq
    for name in wanted:
        if name in panel.benchmarks.columns:
            s = panel.benchmarks[name].reindex(window)
        elif raw_factors is not None and name in raw_factors:
            s = raw_factors[name]
            stamps = pd.DatetimeIndex(s.index)
            stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
            s = pd.Series(s.to_numpy(dtype=float), index=stamps)
            s = s[(stamps >= start) & (stamps < close)]
        elif name in panel.close.columns:
            s = panel.close[name].reindex(window)
        elif is_btc(name) and find_btc(panel.benchmarks.columns):  # BTC spelled otherwise (BTC-USD)
            s = panel.benchmarks[find_btc(panel.benchmarks.columns)].reindex(window)
        else:
            have = sorted({*panel.benchmarks.columns, *(raw_factors or {})})
            raise DataError(
                f"the model needs series {name!r}, which the dataset does not have (it has {have})"
            )
        parts.append(pd.DataFrame({"close": s.dropna()}).assign(symbol=name))
    out = pd.concat(parts)
    out.index = (
        pd.DatetimeIndex(out.index).tz_convert("UTC").tz_localize(None)
    )  # naive UTC: MLflow's datetime
    out.index.name = "timestamp"
    out = out.reset_index()
    return out[[*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]].reset_index(drop=True)
