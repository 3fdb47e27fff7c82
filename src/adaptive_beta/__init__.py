"""Adaptive Beta: forward beta of crypto perpetual futures, with an interval, the regime, hedge
orders and an audit trail.

One installed namespace. The three parts live in the repository's top-level folders and are
mapped into this package by `setup.py` (so a user's own `models/` folder never shadows ours):

- `adaptive_beta.models`   (`models/`): the torch-free core (data, simulator, estimators,
  features, bundle, portfolio, monitoring, audit) plus the network definition;
- `adaptive_beta.training` (`training/`): walk-forward fits, MLflow tracking, ONNX export;
- `adaptive_beta.serving`  (`serving/`): the BentoML service and the compliance pages;
- `adaptive_beta.cli`      (`src/adaptive_beta/cli/`): the `abeta` command line composing them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("adaptive-beta")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# The public API, loaded on first use so `import adaptive_beta` stays fast and torch-free: each
# name maps to the small module that defines it (data and models, backtests, the audit trail).
_HOMES = {
    "api": (
        "load_dataset",
        "simulate",
        "features",
        "forward_betas",
        "true_forward_betas",
        "classical_beta",
        "BetaResult",
        "walk_forward_folds",
        "evaluate_baselines",
        "train",
        "load_model",
        "Model",
    ),
    "backtesting": ("baseline_forecasts", "episodes", "backtest", "BacktestReport"),
    "audit_trail": (
        "LocalService",
        "read_audit",
        "count_audit",
        "verify_audit",
        "export_audit",
        "audit_report",
    ),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}
__all__ = [*_WHERE, "__version__"]


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is not None:
        from importlib import import_module

        return getattr(import_module(f"adaptive_beta.{module}"), name)
    raise AttributeError(f"module 'adaptive_beta' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
