"""The recalibration policy on the simulator across a regime change: calm -> nothing, crash -> retrain.

Market: 5 assets, 600 days, calm from the start; calm always exits to a crash (seed 157: calm
until day 468, crash days 469..~513).  A tiny model is fitted on days 0..350 (calm only), then
monitored on a later calm window (days 355..455) and on a window containing the crash
(days 465..545).  Realised betas come from the whole simulated history (horizons complete).
"""

from __future__ import annotations

import dataclasses

import pytest

from adaptive_beta.training.monitor import MonitorConfig, run_monitor
from adaptive_beta.training.recalibrate import RecalibrationPolicy, decide, recalibrate

HORIZON = "14d"


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    import torch

    from adaptive_beta.models.bundle.meta import bundle_inputs
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.features.compute import compute_features
    from adaptive_beta.models.features.spec import FeatureSpec
    from adaptive_beta.models.features.targets import forward_betas, regime_labels
    from adaptive_beta.models.sim.config import SimConfig, legacy_regimes
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.write import write_simulation
    from adaptive_beta.training.export import export_bundle
    from adaptive_beta.training.fit import fit_model
    from adaptive_beta.training.model_config import ModelConfig

    torch.set_num_threads(1)
    # the legacy simulator: this seed's regime path (calm, then a crash at bar 469) and its stable
    # calm betas are the scenario the monitoring policy is tested on
    calm, volatile, crash = legacy_regimes()
    regimes = (
        dataclasses.replace(calm, exit_probs=(0.0, 0.0, 1.0)),
        volatile,
        dataclasses.replace(crash, duration_days=60.0),
    )
    sim = simulate(
        SimConfig.from_preset(
            "legacy", seed=157, n_assets=5, days=600, initial_regime="calm", regimes=regimes
        )
    )
    data = write_simulation(sim, tmp_path_factory.mktemp("sim") / "market")
    panel = load_dataset(data)
    spec = FeatureSpec(
        return_horizons=("1d", "7d"),
        vol_windows=("7d", "30d"),
        beta_windows=("30d", "60d"),
        ewma_halflives=("30d",),
        welch_halflife="30d",
        downside_window="60d",
        drawdown_window="60d",
        factor_windows=("7d", "30d"),
        factor_beta_windows=("30d",),
        funding_windows=("1d", "7d"),
    )
    early = panel.slice(None, panel.index[350])
    ix = early.index
    # every knob pinned: this tests the monitoring policy, so it must not move with model defaults
    mcfg = ModelConfig(
        hidden=8,
        epochs=2,
        lookback="16d",
        max_steps=8,
        batch_size=128,
        max_train_samples=2000,
        dropout=0.1,
        weight_decay=1e-4,
        lr=3e-3,
        shrink_correction=False,
        seed=0,
    )
    fit = fit_model(
        compute_features(early, spec),
        forward_betas(early, HORIZON),
        regime_labels(early, "7d"),
        (None, ix[280]),
        (ix[295], ix[336]),
        mcfg,
        early.benchmark_names,
        progress=False,
        freq=early.freq,
        timestamps=ix,
    )
    # the meta fields `abeta train` writes (training period, data source, horizon, scorecard MSE)
    meta = {
        "model_name": "adaptive-beta",
        "horizon": HORIZON,
        "data_source": str(data),
        "training_period": {"start": str(ix[0]), "end": str(ix[280])},
        **bundle_inputs(early),
        "metrics": {"model_mse": {b: fit.metrics[f"val_rmse_{b}"] ** 2 for b in early.benchmark_names}},
    }
    bundle = export_bundle(fit, spec, meta, tmp_path_factory.mktemp("bundle") / "b", "# test model\n")
    return {"data": data, "panel": panel, "bundle": bundle, "spec": spec, "regime": sim.regime}


def _window(market, a: int, b: int):
    ix = market["panel"].index
    return ix[a], ix[b]


def test_simulated_regimes_are_calm_then_crash(market):
    r = market["regime"].to_numpy()
    assert (r[:469] == 0).all() and (r[469:500] == 2).all()


def test_calm_window_after_training_triggers_no_retrain(market):
    since, until = _window(market, 355, 455)
    rep = run_monitor(
        str(market["bundle"]), MonitorConfig(), data=str(market["data"]), since=since, until=until
    )
    errors = {e["benchmark"]: e for e in rep.errors}
    assert all(e["n"] >= 200 and e["ratio"] < 1.3 for e in errors.values())
    assert rep.flagged_shifts().empty
    d = decide(rep, RecalibrationPolicy())
    assert not d.retrain and not d.triggers["error"] and not d.triggers["shift"]
    # per-asset groups stay near the conventional "stable" level in the same regime
    assert rep.group_psi()["funding_leverage"] < 0.1


def test_crash_window_triggers_retrain_challenger_and_logged_gate(market):
    import mlflow

    from adaptive_beta.training.model_config import ModelConfig
    from adaptive_beta.training.registry import _alias_version, _client
    from adaptive_beta.training.splits import WalkForwardConfig
    from adaptive_beta.training.train_config import TrainConfig

    since, until = _window(market, 465, 545)
    rep = run_monitor(
        str(market["bundle"]), MonitorConfig(), data=str(market["data"]), since=since, until=until
    )
    psi = rep.group_psi()
    assert psi["volatility"] > 0.25 and psi["crypto_benchmark"] > 0.25
    assert psi["volatility"] > 2.0  # a crash, not a wobble
    assert len(rep.flagged_shifts()) >= 1
    assert rep.exit_code == 1

    tcfg = TrainConfig(
        data=str(market["data"]),
        horizon=HORIZON,
        features=market["spec"],
        model=ModelConfig(
            hidden=8, epochs=1, lookback="16d", max_steps=8, batch_size=128, max_train_samples=2000
        ),
        walk_forward=WalkForwardConfig(horizon=HORIZON, train_min="250d", val="40d", test="90d", max_folds=1),
        n_boot=50,
        attribution_windows=8,
        plot_assets=1,
        progress=False,
    )
    out = recalibrate(rep, RecalibrationPolicy(), tcfg, panel=market["panel"], until=until)
    assert out.decision.retrain and out.decision.triggers["shift"] and out.decision.triggers["drift"]
    assert out.error is None and out.version == "1"
    assert _alias_version(_client(), "adaptive-beta", "challenger") == "1"
    assert out.gate_reason and out.promoted is not None

    run = mlflow.get_run(out.monitoring_run_id)
    exp = mlflow.get_experiment(run.info.experiment_id)
    assert exp.name == "adaptive-beta-monitoring"
    assert run.data.tags["decision"] == "retrain" and "beta shift" in run.data.tags["reasons"]
    assert run.data.tags["challenger_version"] == "1" and run.data.tags["gate_reason"] == out.gate_reason
    assert run.data.metrics["psi.volatility"] == pytest.approx(psi["volatility"])
    trained = mlflow.get_run(out.train_run_id)
    assert trained.data.tags["data_source"] == str(market["data"])


def test_cli_monitor_prints_table_writes_json_and_exits_1_on_alert(market, tmp_path):
    import json

    import typer
    from typer.testing import CliRunner

    from adaptive_beta.cli.monitor import monitor

    app = typer.Typer()
    app.command()(monitor)
    since, until = _window(market, 465, 545)
    out = tmp_path / "report.json"
    args = ["--model", str(market["bundle"]), "--data", str(market["data"]), "--since", str(since)]
    res = CliRunner().invoke(app, [*args, "--until", str(until), "--out", str(out)])
    assert res.exit_code == 1, res.output
    assert "volatility" in res.output and "ALERT" in res.output
    body = json.loads(out.read_text())
    groups = {g["group"]: g for g in body["psi_groups"]}
    assert groups["volatility"]["status"] == "drift" and body["alerts"]
    assert not any(f["feature"].endswith("_stale") for f in body["psi_features"])
