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

# The public API (`adaptive_beta.api`), loaded on first use so `import adaptive_beta` stays fast.
__all__ = [
    "load_dataset",
    "simulate",
    "load_model",
    "classical_beta",
    "evaluate_baselines",
    "Model",
    "BetaResult",
    "__version__",
]


def __getattr__(name: str):
    if name in __all__ and name != "__version__":
        from adaptive_beta import api

        return getattr(api, name)
    raise AttributeError(f"module 'adaptive_beta' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
