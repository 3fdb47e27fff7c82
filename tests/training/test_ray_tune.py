"""`abeta tune --ray-address` (issue 14 item 1): a tiny search of 3 Ray Tune trials (Optuna search,
ASHA) on a 2-CPU local Ray cluster started here; each trial a nested MLflow run of the tune run,
tagged with its state; the best config written as TOML, and `abeta train --config` on it gives
back the best trial's pooled validation beta MSE (from the train run's fold runs)."""

from __future__ import annotations

import tomllib

import mlflow
import pytest
from typer.testing import CliRunner

from adaptive_beta.cli.main import app
from adaptive_beta.models.sim.config import SimConfig
from adaptive_beta.models.sim.simulator import simulate
from adaptive_beta.models.sim.write import write_simulation
from adaptive_beta.training.tune import pool
from tests.training.test_tune import TINY as TUNE_TINY

ray = pytest.importorskip("ray")

# the tune tests' tiny search (tests/training/test_tune.py), with quicker scorecard settings
TINY = "progress = false\nn_boot = 50\nattribution_windows = 8\n" + TUNE_TINY


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("raytune")
    data = write_simulation(simulate(SimConfig(seed=13, n_assets=3, days=640)), root / "sim")
    (root / "tiny.toml").write_text(f'data = "{data}"\n' + TINY)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir="/tmp/abeta-ray-test")
    yield root
    ray.shutdown()


def _children(parent_id: str) -> list:
    parent = mlflow.get_run(parent_id)
    return mlflow.search_runs(
        experiment_ids=[parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        output_format="list",
    )


def test_tune_on_ray_nests_trials_and_its_best_config_trains_to_the_same_metric(cluster, tmp_path):
    out = tmp_path / "best.toml"
    args = ["tune", "--config", str(cluster / "tiny.toml"), "--out", str(out), "--n-trials", "3"]
    res = CliRunner().invoke(
        app, [*args, "--storage", f"sqlite:///{tmp_path}/study.db", "--ray-address", "local"]
    )
    assert res.exit_code == 0, res.output
    assert "of 3 trials on Ray at local" in res.output
    assert "Configuration for experiment" not in res.output  # progress = false: Ray's table too
    printed = float(res.output.split("best pooled validation beta MSE ")[1].split()[0])

    parent = mlflow.search_runs(
        experiment_names=["adaptive-beta-tune"],
        filter_string="tags.mlflow.runName LIKE 'tune %'",
        output_format="list",
    )
    assert len(parent) == 1
    best = parent[0].data.metrics["best_value"]
    assert abs(printed - best) <= 5e-7 and 0 < best < 1
    assert parent[0].data.params["ray_address"] == "local"
    trials = _children(parent[0].info.run_id)
    assert len(trials) == 3 and all(t.info.status == "FINISHED" for t in trials)
    states = [t.data.tags["optuna.state"] for t in trials]
    assert set(states) <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states
    done = [t.data.metrics["objective"] for t in trials if t.data.tags["optuna.state"] == "COMPLETE"]
    assert min(done) == pytest.approx(best, rel=1e-6)
    assert all(t.data.params["arch"] in ("gru", "mlp") for t in trials)

    written = tomllib.loads(out.read_text())
    assert set(written["model"]) >= {"arch", "hidden", "lr", "lookback", "loss"}
    assert written["walk_forward"]["max_folds"] == 2

    train = CliRunner().invoke(app, ["train", "--config", str(out), "--quiet"])
    assert train.exit_code == 0, train.output
    run_id = next(line.split()[-1] for line in train.output.splitlines() if line.startswith("run id:"))
    folds = sorted(_children(run_id), key=lambda r: int(r.data.params["fold"]))
    assert len(folds) == 2
    benchmarks = ["BTCUSDT", "CRYPTO_EW"]
    score = pool([f.data.metrics for f in folds], benchmarks)
    assert score.objective == pytest.approx(best, rel=1e-9)
