"""The public Python API: a handful of functions a notebook needs, re-exported by `adaptive_beta`.

Why a separate layer: the deep modules are organised for the service and the training job (one
module per job, arrays for speed), which made a notebook import fifteen of them.  These functions
compose them without adding rules of their own, so a number from the API is the number the CLI,
the service and the scorecard give.  Every import is lazy: `import adaptive_beta` stays fast and
torch-free; only `evaluate_baselines` loads the training package (still no torch).
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

    def predict(self, panel) -> pd.DataFrame:
        """One row per asset: `symbol`, `as_of`, `<bench>`, `<bench>_lo`, `<bench>_hi`, `regime_<r>`."""
        from adaptive_beta.models.bundle.panel_frame import forecasts_frame

        return forecasts_frame(self.bundle, self.predictor, panel)

    def explain(self, panel) -> pd.DataFrame:
        """Exact group Shapley values: one row per (symbol, benchmark, group) with `contribution`,
        `baseline` and `beta`; contributions add up to `beta - baseline`."""
        from adaptive_beta.models.bundle.panel_frame import explanations_frame

        return explanations_frame(self.bundle, self.predictor, panel)


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
