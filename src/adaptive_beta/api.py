"""The public Python API: a handful of functions a notebook needs, re-exported by `adaptive_beta`.

Why a separate layer: the deep modules are organised for the service and the training job (one
module per job, arrays for speed), which made a notebook import fifteen of them.  These functions
compose them without adding rules of their own, so a number from the API is the number the CLI,
the service and the scorecard give.  Every import is lazy: `import adaptive_beta` stays fast and
torch-free; `evaluate_baselines` and `walk_forward_folds` load the training package (no torch),
`train` loads torch.  Backtests are in `adaptive_beta.backtesting`, the audit trail in
`adaptive_beta.audit_trail`; all are re-exported by `adaptive_beta`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from adaptive_beta.models.data.schema import Panel

METHODS = ("ols", "rolling_ols", "ewma", "welch", "kalman")


def load_dataset(path: str | Path, **overrides) -> Panel:
    """Read and validate a dataset folder or manifest into a `Panel` (bars, benchmarks, factors).

    The loader every command uses, so a notebook sees the data exactly as `abeta train` does;
    `overrides` are manifest keys (e.g. `freq="1d"`).  Bad files raise `DataError` naming the
    file, row and column.
    """
    from adaptive_beta.models.data.loaders import load_dataset as _load

    return _load(path, **overrides)


def simulate(
    out: str | Path, *, seed: int = 7, n_assets: int = 12, days: int = 1460, force: bool = False, **config
):
    """Simulate a market with known true betas and write it as a dataset folder; returns the folder.

    Why a folder and not frames: `load_dataset(simulate("sim"))` then reads it like real data
    (the same validation and benchmarks), and the truth files let scorecards report the error
    against the true beta.  `config`: any other `SimConfig` field (`freq="8h"`, `start=...`).
    """
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate as _simulate
    from adaptive_beta.models.sim.write import write_simulation

    cfg = SimConfig(seed=seed, n_assets=n_assets, days=days, **config)
    return write_simulation(_simulate(cfg), out, force=force)


def _panel(data) -> Panel:
    """A loaded `Panel` as is; a dataset path through `load_dataset`."""
    from adaptive_beta.models.data.schema import Panel

    return data if isinstance(data, Panel) else load_dataset(data)


def features(data, **spec):
    """The causal feature table of a dataset (a `FeatureTable`): what the model sees at every bar.

    Why: the same code computes them in training and in the service, so a notebook inspects the
    real inputs.  `.frame` is indexed by (timestamp, symbol), `.groups` maps column -> feature
    group (the players of the Shapley explanations), `.base_columns` the Welch beta per benchmark
    that the network corrects.  `spec`: `FeatureSpec` fields to change (e.g. `state=True`).
    """
    from adaptive_beta.models.features.compute import compute_features
    from adaptive_beta.models.features.spec import FeatureSpec

    return compute_features(_panel(data), FeatureSpec(**spec))


def forward_betas(data, horizon: str = "30d") -> pd.DataFrame:
    """Realised OLS beta over the next `horizon` (the training target), per (timestamp, symbol).

    One column per benchmark; NaN where the window is incomplete or the asset is the benchmark.
    """
    from adaptive_beta.models.features.targets import forward_betas as _forward

    return _forward(_panel(data), horizon)


def true_forward_betas(data, horizon: str = "30d") -> pd.DataFrame:
    """The simulator's true forward beta over the next `horizon`, same layout as `forward_betas`.

    Why: on simulated data the gap between realised and true forward betas is the target's noise
    floor, which no forecaster can remove.  Raises `DataError` on data without truth files.
    """
    from adaptive_beta.models.features.targets import true_forward_betas as _true

    return _true(_panel(data), horizon)


def walk_forward_folds(data, **splits) -> pd.DataFrame:
    """The walk-forward folds (one row each: `fold`, `train_start` ... `test_end`) that training and
    the scorecards use on this data; `splits`: `WalkForwardConfig` fields (`test="120d"`, `end=...`)."""
    from adaptive_beta.training.splits import WalkForwardConfig, make_folds

    rows = []
    for f in make_folds(_panel(data).index, WalkForwardConfig(**splits)):
        rows.append({"fold": f.name, **{k: getattr(f, k) for k in _FOLD_BOUNDS}})
    return pd.DataFrame(rows, columns=["fold", *_FOLD_BOUNDS])


_FOLD_BOUNDS = ("train_start", "train_end", "val_start", "val_end", "test_start", "test_end")


def train(data=None, *, panel: Panel | None = None, **config):
    """Train, score and export a model exactly as `abeta train` does; returns the `TrainResult`.

    Walk-forward fits on the folds, the scorecard of model and baselines on the same test rows
    (`.scorecard`), the final fit, the ONNX bundle (`.bundle_dir`, loadable by `load_model`), an
    MLflow run (`.run_id`) and, unless `register_model=False`, registration with the promotion gate
    (`.version`, `.promotion`).  `data`: a dataset folder or manifest (None: the built-in simulator);
    `panel`: the same data already loaded (skips re-reading it).  `config`: `TrainConfig` fields,
    sections as dicts, e.g. `model={"epochs": 2, "hidden": 8}`, `walk_forward={"max_folds": 1}`,
    `n_boot=50`, `progress=False`.  Loads torch.
    """
    from adaptive_beta.training.train_config import TrainConfig
    from adaptive_beta.training.train_run import train as _train

    cfg = TrainConfig(data=None if data is None else str(data), **config)
    return _train(cfg, panel=panel)


@dataclass
class Model:
    """A model bundle ready to forecast and explain, from `load_model`.

    `predict` and `explain` take a panel frame (the long table of `timestamp`, `symbol`, `close`,
    ... that a /forecast request carries: `adaptive_beta.models.bundle.panel_frame`) or a loaded
    `Panel` (every asset at its last bar), and return the service's numbers as DataFrames.
    """

    bundle: Any  # adaptive_beta.models.bundle.folder.Bundle
    source: str
    _predictor: Any = field(default=None, repr=False)

    @property
    def predictor(self):
        """The bundle's ONNX Runtime predictor (`Predictor`), built on first use."""
        if self._predictor is None:
            from adaptive_beta.models.bundle.predictor import Predictor

            self._predictor = Predictor(self.bundle)
        return self._predictor

    @property
    def meta(self):
        """The bundle's `BundleMeta`: benchmarks, regimes, required history, training period."""
        return self.bundle.meta

    def predict(self, panel, symbols: list[str] | None = None) -> pd.DataFrame:
        """One row per asset: `symbol`, `as_of`, `<bench>`, `<bench>_lo`, `<bench>_hi`, `regime_<r>`.

        `symbols`: keep only these assets (default: every asset the data holds)."""
        from adaptive_beta.models.bundle.panel_frame import forecasts_frame

        return _only(forecasts_frame(self.bundle, self.predictor, panel), symbols)

    def explain(self, panel, symbols: list[str] | None = None) -> pd.DataFrame:
        """Exact group Shapley values: one row per (symbol, benchmark, group) with `contribution`,
        `baseline` and `beta`; contributions add up to `beta - baseline`.

        The groups are the bundle's feature groups and the baseline is every feature at its
        training mean, as the service's explanations (2^G coalitions in one ONNX Runtime call)."""
        from adaptive_beta.models.bundle.panel_frame import explanations_frame

        return _only(explanations_frame(self.bundle, self.predictor, panel), symbols)

    def forecast_history(self, data, start: str | None = None, end: str | None = None) -> dict:
        """Benchmark -> (bar x asset) betas at every bar of `data` in [start, end], for backtests.

        Why out of sample only: a bar inside the model's training period is NaN (a model scored on
        the data it was fitted on would flatter it), as are bars with too little history."""
        import numpy as np

        from adaptive_beta.models.portfolio.forecasts import bundle_forecasts

        panel = _panel(data)
        keep = np.ones(len(panel.index), dtype=bool)
        if start is not None:
            keep &= panel.index >= pd.Timestamp(start, tz="UTC")
        if end is not None:
            keep &= panel.index <= pd.Timestamp(end, tz="UTC")
        after = self.meta.training_end()
        return bundle_forecasts(panel, self.bundle, np.nonzero(keep)[0], out_of_sample_after=after)

    def evaluate(self, data: str | Path, horizon: str = "30d", start: str | None = None, n_boot: int = 500):
        """Scorecard of this model, unchanged, beside every baseline on another dataset (what
        `abeta evaluate model` writes): one block `oos` from the first bar with a full window (or
        `start`); `data` is a dataset folder or manifest.  Run by ONNX Runtime as served."""
        from adaptive_beta.training.evaluate_model import evaluate_model

        return evaluate_model(self.source, str(data), horizon, start, n_boot, progress=False)


def _only(frame: pd.DataFrame, symbols: list[str] | None) -> pd.DataFrame:
    """Rows of the given symbols (all when None), renumbered."""
    if symbols is None:
        return frame
    return frame[frame["symbol"].isin(list(symbols))].reset_index(drop=True)


def load_model(uri_or_path: str | Path) -> Model:
    """Load a bundle from a folder, an MLflow model folder or the registry (`models:/adaptive-beta@champion`).

    The bundle's files are re-hashed against its manifest, as the service does, so a notebook
    never explains a model other than the one that was registered.  Torch-free.
    """
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.resolve import resolve_bundle

    return Model(load_bundle(resolve_bundle(uri_or_path)), str(uri_or_path))


@dataclass
class BetaResult:
    """Betas with standard errors from `classical_beta`.

    `params` and `bse`: for `ols` one row per asset with columns `alpha`, `beta`; for the rolling
    methods a frame (time x asset) of the beta, and of its standard error where the method has one
    (`rolling_ols`; None otherwise).  `fits`: statsmodels results per asset (`ols` only).
    """

    method: str
    window: int | None  # bars (half-life for ewma/welch); None for the full-sample ols
    params: pd.DataFrame
    bse: pd.DataFrame | None
    nobs: pd.Series
    fits: dict[str, Any] = field(default_factory=dict)

    @property
    def beta(self) -> pd.Series | pd.DataFrame:
        """Beta per asset (`ols`) or beta over time per asset (rolling methods)."""
        return self.params["beta"] if self.method == "ols" else self.params

    def summary(self) -> pd.DataFrame:
        """Per asset: the latest (or full-sample) beta, its standard error, t-statistic and rows used."""
        if self.method == "ols":
            beta, se = self.params["beta"], self.bse["beta"]
        else:
            beta = self.params.ffill().iloc[-1]
            se = (
                self.bse.ffill().iloc[-1]
                if self.bse is not None
                else pd.Series(float("nan"), index=beta.index)
            )
        return pd.DataFrame({"beta": beta, "se": se, "t": beta / se, "nobs": self.nobs})


def classical_beta(
    asset_returns: pd.Series | pd.DataFrame,
    benchmark_returns: pd.Series | pd.DataFrame,
    method: str = "rolling_ols",
    window: int | str | None = "90d",
) -> BetaResult:
    """Classical beta of each asset on one benchmark: `ols`, `rolling_ols`, `ewma`, `welch` or `kalman`.

    Why here: the scorecard's baselines are these estimators; calling them through one function
    with Series or frames lets a notebook check a number without learning their array layouts.
    `asset_returns`: a Series (one asset) or a frame (one column per asset); `benchmark_returns`: a
    Series or a one-column frame, aligned on the index.  `window`: bars (int) or a duration
    ("90d", read with the index's bar length); the half-life for `ewma`/`welch`; ignored by
    `ols` and `kalman`.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {list(METHODS)}")
    y = asset_returns.to_frame() if isinstance(asset_returns, pd.Series) else asset_returns
    x = benchmark_returns
    if isinstance(x, pd.DataFrame):
        if x.shape[1] != 1:
            raise ValueError(f"benchmark_returns must be one series, got {x.shape[1]} columns")
        x = x.iloc[:, 0]
    x = x.reindex(y.index)
    nobs = (y.notna() & x.notna().to_numpy()[:, None]).sum().astype(int)
    if method == "ols":
        return _full_ols(y, x, nobs)
    bars = _bars(window, y.index)
    return _rolling(method, y, x, bars, nobs)


def _bars(window: int | str | None, index: pd.Index) -> int:
    """A window in bars: an int as is, a duration divided by the index's median bar length."""
    if window is None:
        raise ValueError("give a window (bars or a duration such as '90d') for this method")
    if isinstance(window, int):
        return window
    from adaptive_beta.models.durations import to_periods

    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        raise ValueError(f"window {window!r} is a duration: the returns need a DatetimeIndex")
    return to_periods(window, pd.Series(index).diff().median())


def _full_ols(y: pd.DataFrame, x: pd.Series, nobs: pd.Series) -> BetaResult:
    import statsmodels.api as sm

    params, bse, fits = {}, {}, {}
    for col in y.columns:
        ok = y[col].notna() & x.notna()
        fit = sm.OLS(y.loc[ok, col].to_numpy(), sm.add_constant(x[ok].to_numpy())).fit()
        fits[col] = fit
        params[col] = {"alpha": fit.params[0], "beta": fit.params[1]}
        bse[col] = {"alpha": fit.bse[0], "beta": fit.bse[1]}
    return BetaResult("ols", None, pd.DataFrame(params).T, pd.DataFrame(bse).T, nobs, fits)


def _rolling(method: str, y: pd.DataFrame, x: pd.Series, bars: int, nobs: pd.Series) -> BetaResult:
    from adaptive_beta.models.estimators.ewma import ewma_beta, welch_beta
    from adaptive_beta.models.estimators.kalman import kalman_beta
    from adaptive_beta.models.estimators.rolling import rolling_ols_beta_se

    bse = None
    if method == "rolling_ols":
        beta, bse = rolling_ols_beta_se(y, x, bars)
    elif method == "ewma":
        beta = ewma_beta(y, x, bars)
    elif method == "welch":
        beta = welch_beta(y, x, bars)
    else:
        beta, bars = kalman_beta(y, x), None
    return BetaResult(method, bars, beta, bse, nobs)


def evaluate_baselines(data, horizon: str = "30d", **config):
    """Walk-forward scorecard of every classical baseline (what `abeta evaluate baselines` prints).

    Why: the bar a model must clear, on your data, in one call.  `data`: a dataset path or a
    loaded `Panel`; `config`: other `EvalConfig` fields (`n_boot=200`, `splits={...}`).  Returns
    the `Scorecard` (`.table()`, `.records`, `.frame()` as a DataFrame).
    """
    from adaptive_beta.models.data.schema import Panel
    from adaptive_beta.training.scorecard import EvalConfig
    from adaptive_beta.training.scorecard import evaluate_baselines as _evaluate

    panel = data if isinstance(data, Panel) else load_dataset(data)
    return _evaluate(panel, EvalConfig(horizon=horizon, **config), progress=False)
