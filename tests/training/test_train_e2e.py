"""End to end on a tiny simulated market: walk-forward train -> scorecard -> final fit -> bundle ->
MLflow run -> registry -> export -> load and predict in a process without torch -> evaluate model
on another dataset.  One module-scoped training run keeps this under a minute or two."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from adaptive_beta.cli.main import app
from adaptive_beta.models.sim.config import SimConfig
from adaptive_beta.models.sim.simulator import simulate
from adaptive_beta.models.sim.write import write_simulation
from adaptive_beta.training.model_config import ModelConfig
from adaptive_beta.training.splits import WalkForwardConfig
from adaptive_beta.training.train_config import TrainConfig

REQUIRED = {"rmse", "mae", "r2", "hedge_error", "excess_hedge_var", "rmse_true"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    mp.setenv("ABETA_MLRUNS", str(root / "mlruns"))
    data = write_simulation(simulate(SimConfig(seed=5, n_assets=4, days=760)), root / "sim")
    other = write_simulation(simulate(SimConfig(seed=9, n_assets=4, days=500)), root / "sim_other")
    cfg = TrainConfig(
        data=str(data),
        model=ModelConfig(epochs=1, hidden=8, max_train_samples=800, lookback="32d", max_steps=8),
        walk_forward=WalkForwardConfig(train_min="300d", val="60d", test="120d", max_folds=1),
        n_boot=50,
        attribution_windows=8,
        progress=False,
    )
    from adaptive_beta.training.train_run import train

    result = train(cfg, scorecard_out=root / "scorecard.json")
    yield {"root": root, "result": result, "cfg": cfg, "other": other, "uri": f"sqlite:///{root}/mlflow.db"}
    mp.undo()


@pytest.fixture(autouse=True)
def _same_store(trained, monkeypatch):
    """The per-test isolation of tests/conftest.py would point MLflow elsewhere: use the module's store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", trained["uri"])
    mlflow.set_tracking_uri(trained["uri"])


def test_scorecard_has_model_rows_beside_baselines_with_every_metric(trained):
    records = json.loads((trained["root"] / "scorecard.json").read_text())
    assert set(records[0]) == {"estimator", "kind", "benchmark", "metric", "split", "value"}
    model = [r for r in records if r["kind"] == "model" and r["split"] == "pooled"]
    for bench in ("BTCUSDT", "CRYPTO_EW"):
        metrics = {r["metric"] for r in model if r["benchmark"] == bench}
        assert REQUIRED <= metrics and "coverage90" in metrics and "dm_pvalue" in metrics
        cov = next(r["value"] for r in model if r["benchmark"] == bench and r["metric"] == "coverage90")
        assert 0.0 <= cov <= 1.0
    regime = {r["estimator"] for r in records if r["benchmark"] == "regime" and r["metric"] == "logloss"}
    assert regime == {"adaptive_beta_gru_regime", "regime_persistence", "regime_hmm"}
    baselines = {r["estimator"] for r in records if r["kind"] == "baseline" and r["benchmark"] == "BTCUSDT"}
    assert {"welch_hl60d", "rolling_ols_90d", "kalman_rw", "vasicek_90d", "blume_90d"} <= baselines


def test_mlflow_run_logs_config_fingerprints_metrics_plots_card_and_bundle(trained):
    run = mlflow.get_run(trained["result"].run_id)
    tags = run.data.tags
    assert len(tags["data_fingerprint"]) == 64 and len(tags["feature_spec_hash"]) == 64
    assert tags["git_commit"] and tags["version.torch"].startswith("2.13")
    assert run.data.params["horizon"] == "30d" and run.data.params["model.arch"] == "gru"
    assert any(k.startswith("adaptive_beta_gru.BTCUSDT.rmse") for k in run.data.metrics)
    client = mlflow.MlflowClient()
    names = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"scorecard.json", "model_card.md", "config.json", "attributions.json", "plots", "bundle"} <= names
    plots = {f.path for f in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/interval_calibration.png" in plots and "plots/regime_confusion.png" in plots
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert len(history) >= 1


def test_registered_as_challenger_and_gate_decided(trained):
    res = trained["result"]
    client = mlflow.MlflowClient()
    mv = client.get_model_version_by_alias("adaptive-beta", "challenger")
    assert str(mv.version) == res.version
    assert res.promotion is not None and res.promotion.reason  # promoted or not, it says why


def test_export_then_load_and_predict_without_torch(trained, tmp_path):
    out = tmp_path / "bundle"
    r = CliRunner().invoke(app, ["export", "--model", "models:/adaptive-beta@challenger", "--out", str(out)])
    assert r.exit_code == 0, r.output
    code = textwrap.dedent(
        f"""
        import sys, numpy as np
        from adaptive_beta.models.bundle.folder import load_bundle
        from adaptive_beta.models.bundle.predictor import Predictor
        b = load_bundle({str(out)!r})
        x = np.random.default_rng(0).normal(size=(3, 8, len(b.feature_columns))).astype("float32")
        o = Predictor(b).predict(x)
        assert o["beta"].shape == (3, 2) and np.isfinite(o["beta"]).all()
        assert (o["beta_lo"] <= o["beta"]).all() and (o["beta"] <= o["beta_hi"]).all()
        assert np.allclose(o["regime_prob"].sum(axis=1), 1, atol=1e-5)
        print("torch" in sys.modules)
        """
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "False"


def test_evaluate_model_scores_the_bundle_unchanged_on_another_dataset(trained, tmp_path):
    out = tmp_path / "oos.json"
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            "model",
            "--model",
            "models:/adaptive-beta@challenger",
            "--data",
            str(trained["other"]),
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    records = json.loads(out.read_text())
    model = [x for x in records if x["kind"] == "model" and x["split"] == "oos"]
    assert {x["benchmark"] for x in model} == {"BTCUSDT", "CRYPTO_EW"}
    assert {"rmse", "rmse_true", "excess_hedge_var"} <= {x["metric"] for x in model}
    bad = CliRunner().invoke(
        app,
        [
            "evaluate",
            "model",
            "--model",
            "models:/adaptive-beta@challenger",
            "--data",
            str(trained["other"]),
            "--horizon",
            "30 days",
            "--out",
            str(out),
        ],
    )
    assert bad.exit_code == 2 and "--horizon" in bad.output


def test_walk_forward_predictions_drive_the_overlay_backtest(trained, tmp_path):
    import pandas as pd

    preds = trained["root"] / "scorecard.predictions.parquet"
    long = pd.read_parquet(preds)
    assert {"BTCUSDT", "CRYPTO_EW", "BTCUSDT_lo", "BTCUSDT_hi"} <= set(long.columns)
    assert long.index.names == ["timestamp", "symbol"] and len(long) > 100
    r = CliRunner().invoke(
        app,
        [
            "backtest",
            "--data",
            str(trained["cfg"].data),
            "--forecasts",
            str(preds),
            "--estimators",
            "rolling_ols_30d,welch_hl60d",
            "--out",
            str(tmp_path / "bt"),
        ],
    )
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "bt" / "summary.json").read_text())
    assert {"model", "rolling_ols_30d", "welch_hl60d"} <= {row["estimator"] for row in summary["rows"]}


def test_folds_are_nested_runs_with_epoch_curves_and_fold_test_scores(trained):
    """Each walk-forward fold is a child run named by its test months, with one val_loss point per
    epoch and the model's fold scores equal to the scorecard's; the parent has no fold<k>_ keys."""
    parent = trained["result"].run_id
    client = mlflow.MlflowClient()
    exp = client.get_run(parent).info.experiment_id
    children = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    folds = json.loads(Path(client.download_artifacts(parent, "folds.json")).read_text())
    assert len(children) == len(folds) == 1
    child, info = children[0], folds[0]
    assert child.info.run_name == f"fold 0 (test {info['test'][0][:7]}..{info['test'][1][:7]})"
    assert re.fullmatch(r"fold 0 \(test \d{4}-\d\d\.\.\d{4}-\d\d\)", child.info.run_name)
    assert (
        child.data.params["test_start"] == info["test"][0]
        and child.data.params["train_end"] == info["train"][1]
    )
    curve = client.get_metric_history(child.info.run_id, "val_loss")
    assert [m.step for m in curve] == list(range(len(curve))) and len(curve) >= 1
    assert child.data.metrics["best_val_loss"] == pytest.approx(info["val_loss"])
    records = json.loads((trained["root"] / "scorecard.json").read_text())
    rmse = next(
        r["value"]
        for r in records
        if r["kind"] == "model"
        and r["split"] == "fold0"
        and r["benchmark"] == "BTCUSDT"
        and r["metric"] == "rmse"
    )
    assert child.data.metrics["adaptive_beta_gru.BTCUSDT.rmse"] == pytest.approx(rmse)
    assert not [k for k in client.get_run(parent).data.metrics if k.startswith("fold")]


def test_final_fit_best_epoch_checkpoint_is_logged_once(trained):
    client = mlflow.MlflowClient()
    run = client.get_run(trained["result"].run_id)
    logged = [f.path for f in client.list_artifacts(run.info.run_id, "checkpoints/member0")]
    assert logged == [run.data.tags["checkpoint.member0"]]
    assert re.fullmatch(r"checkpoints/member0/best-epoch=\d+\.ckpt", logged[0])
