"""A small bundle trained the way `abeta train` trains, at toy sizes: for tests and benchmarks.

Why in the package: the service benchmark (`benchmarks/bench_service.py`) and the service tests
both need a real trained bundle, and a script run from a fresh clone cannot import the `tests`
folder.  Needs torch (the training layer).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

E2E_SPEC = {  # short windows, so a 500-day market leaves enough training windows after the warm-up
    "return_horizons": ["1d", "7d"],
    "vol_windows": ["7d", "20d"],
    "beta_windows": ["20d", "40d"],
    "ewma_halflives": ["10d"],
    "welch_halflife": "10d",
    "downside_window": "40d",
    "volume_z_window": "10d",
    "funding_windows": ["1d", "3d"],
    "oi_windows": ["1d"],
    "factor_windows": ["5d"],
    "factor_beta_windows": ["20d"],
    "drawdown_window": "40d",
}


def build_real_bundle(
    root: Path,
    spec: dict | None = None,
    n_assets: int = 4,
    days: int = 500,
    seed: int = 0,
    model: dict | None = None,
    freq: str = "1d",
) -> dict:
    """Simulate, write and load a market under `root/data`; fit a tiny BetaNet; export `root/bundle`.

    The steps and their arguments are those of training/train_run.py (features from the bundle's
    spec, 30d forward-beta targets, 7d forward regimes, last 20 % of the panel for validation,
    factor names in meta), at toy sizes: one epoch, hidden 8, 500 training windows.  `freq` is the
    simulated bar length ("1d", "8h", "1h"): the stored-state benchmark serves an 8h model.  Needs torch.
    Returns {"data", "bundle", "panel", "spec"}.
    """
    import torch

    from adaptive_beta.models.bundle.meta import bundle_inputs
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.features.compute import FeatureSpec, compute_features
    from adaptive_beta.models.features.targets import forward_betas, regime_labels
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation
    from adaptive_beta.training.export import export_bundle
    from adaptive_beta.training.fit import fit_model
    from adaptive_beta.training.model_config import ModelConfig

    torch.set_num_threads(1)
    data = write_simulation(
        simulate(SimConfig(n_assets=n_assets, days=days, seed=seed, freq=freq)), root / "data"
    )
    panel = load_dataset(data)
    fspec = FeatureSpec(**(E2E_SPEC if spec is None else spec))
    table = compute_features(panel, fspec)
    targets = forward_betas(panel, "30d")
    regimes = regime_labels(panel, "7d")
    cut = panel.index[int(len(panel.index) * 0.8)]
    cfg = ModelConfig(
        **{
            "epochs": 1,
            "hidden": 8,
            "max_train_samples": 500,
            "lookback": "16d",
            "max_steps": 8,
            **(model or {}),
        }
    )
    fit = fit_model(
        table,
        targets,
        regimes,
        (None, cut - pd.Timedelta("31D")),
        (cut, None),
        cfg,
        list(panel.benchmark_names),
        progress=False,
        freq=panel.freq,
        timestamps=panel.index,
    )
    meta = {
        "model_name": "adaptive-beta-e2e",
        "model_version": "e2e-1",
        **bundle_inputs(panel),
    }
    bundle = export_bundle(
        fit, fspec, meta, root / "bundle", "# e2e test model\n\nOne epoch on a simulated market.\n"
    )
    return {"data": data, "bundle": bundle, "panel": panel, "spec": fspec}
