"""`abeta tune` on a tiny simulated market: trials as nested MLflow runs under one parent, a study
that resumes from its SQLite storage, pruning through the Lightning callback, the best config
written as TOML that `abeta train --config` accepts, and an objective computed on validation
blocks only (changing test-block targets does not move it)."""

from __future__ import annotations

import tomllib

import mlflow
import numpy as np
import optuna
import pytest
from typer.testing import CliRunner

from adaptive_beta.cli.main import app
from adaptive_beta.models.sim.config import SimConfig
from adaptive_beta.models.sim.simulator import simulate
from adaptive_beta.models.sim.write import write_simulation
from adaptive_beta.training.model_config import ModelConfig
from adaptive_beta.training.pipeline import prepare
from adaptive_beta.training.splits import make_folds
from adaptive_beta.training.tracking import setup_mlflow
from adaptive_beta.training.train_config import TrainConfig, load_train_config
from adaptive_beta.training.tune import _result as tune_result
from adaptive_beta.training.tune import pool, score_config

TINY = """\
[model]
epochs = 3
hidden = 8
max_train_samples = 600
lookback = "32d"
max_steps = 8

[walk_forward]
train_min = "300d"
val = "60d"
test = "90d"
max_folds = 2
"""


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    data = write_simulation(simulate(SimConfig(seed=13, n_assets=3, days=640)), root / "sim")
    (root / "tiny.toml").write_text(f'data = "{data}"\nprogress = false\n' + TINY)
    return root


def test_cli_runs_trials_as_nested_runs_resumes_and_writes_a_config_train_accepts(market, monkeypatch):
    uri = f"sqlite:///{market}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    storage = f"sqlite:///{market}/study.db"
    out = market / "best.toml"
    args = ["tune", "--config", str(market / "tiny.toml"), "--storage", storage, "--out", str(out)]
    first = CliRunner().invoke(app, [*args, "--n-trials", "2"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(app, [*args, "--n-trials", "1"])
    assert again.exit_code == 0, again.output

    study = optuna.load_study(study_name="adaptive-beta-tune", storage=storage)
    assert len(study.trials) == 3  # the second invocation resumed the same study
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(np.isfinite(t.value) and t.value > 0 for t in done)

    written = tomllib.loads(out.read_text())
    cfg = load_train_config(out)  # what `abeta train --config` does with it
    assert cfg.model.hidden == study.best_params["hidden"]
    assert cfg.model.lookback == study.best_params["lookback"]
    assert cfg.model.epochs == 3 and cfg.walk_forward.max_folds == 2  # the caller's settings kept
    assert written["model"]["dropout"] == pytest.approx(study.best_params["dropout"])

    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name("adaptive-beta-tune")
    runs = mlflow.search_runs([exp.experiment_id], output_format="list")
    parents = [r for r in runs if r.info.run_name.startswith("tune ")]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 2 and len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {p.info.run_id for p in parents}
    assert all("objective" in c.data.metrics for c in children if c.data.tags["optuna.state"] == "COMPLETE")


def test_pruning_callback_stops_a_trial_through_lightning(market, monkeypatch):
    """A pruner that prunes any value above -1 stops the first fold's fit after its first epoch."""
    uri = f"sqlite:///{market}/prune.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    setup_mlflow("tune-test")
    cfg = load_train_config(market / "tiny.toml")
    prep = prepare(cfg)
    folds = make_folds(prep.panel.index, cfg.walk_forward)
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=-1.0))
    trial = study.ask()
    with mlflow.start_run(), pytest.raises(optuna.TrialPruned, match="fold 1 epoch 0"):
        score_config(prep, cfg.model, folds, trial)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    reported = study.trials[0].intermediate_values
    assert list(reported) == [0] and reported[0] > 0  # one validation MSE, at fold 0 epoch 0


def test_objective_uses_validation_blocks_only(market, monkeypatch):
    """Scramble every target inside the test blocks: the objective must not move (test unused)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{market}/blind.db")
    setup_mlflow("tune-test")
    cfg = load_train_config(market / "tiny.toml")
    cfg = TrainConfig.model_validate(
        {**cfg.model_dump(mode="json"), "walk_forward": {**cfg.walk_forward.model_dump(), "max_folds": 1}}
    )
    prep = prepare(cfg)
    folds = make_folds(prep.panel.index, cfg.walk_forward)
    model = ModelConfig.model_validate({**cfg.model.model_dump(), "epochs": 2})
    with mlflow.start_run():
        before = score_config(prep, model, folds)
    ts = prep.targets.index.get_level_values("timestamp")
    in_test = (ts >= folds[-1].test_start) & (ts <= folds[-1].test_end)
    assert in_test.sum() > 0
    prep.targets.loc[in_test] = prep.targets.loc[in_test] * -3.0 + 7.0
    with mlflow.start_run():
        after = score_config(prep, model, folds)
    assert after.objective == before.objective
    assert before.mse.keys() == set(prep.benchmarks)


def test_pool_weights_folds_by_their_validation_rows():
    folds = [
        {"val_n_B": 100.0, "val_rmse_B": 0.1, "val_rmse_base_B": 0.2},
        {"val_n_B": 300.0, "val_rmse_B": 0.3, "val_rmse_base_B": 0.2},
    ]
    score = pool(folds, ["B"])
    assert score.mse["B"] == pytest.approx((100 * 0.01 + 300 * 0.09) / 400)
    assert score.mse_base["B"] == pytest.approx(0.04)
    assert score.objective == score.mse["B"]


def test_no_complete_trial_is_a_clear_error(market):
    cfg = load_train_config(market / "tiny.toml")
    storage = f"sqlite:///{market}/none-study.db"
    study = optuna.create_study(study_name="empty", storage=storage)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    with pytest.raises(ValueError, match="no trial completed"):
        tune_result(optuna.load_study(study_name="empty", storage=storage), cfg, None, "r", storage)
